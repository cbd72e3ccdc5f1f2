"""Defaults that the daemon and the trainer (or the inbox protocol) each keep must agree, and so must
the stage names in the published JSON schemas and the pipeline the daemon runs.

The trainer runs alone and the daemon never imports it (nor torch), so each keeps its own
default; a job run through the daemon and one run by hand must still get the same model."""

from __future__ import annotations

from daemon.config import Settings
from daemon.jobs.options import job_options_schema
from gaussian_splatting.config import PRESETS, TrainConfig
from gaussian_splatting.densify import DensifySettings
from gaussian_splatting.outliers import OutlierSettings
from inbox_protocol.set_limits import SetLimits
from stages.registry import OPTIONS_OF_NO_STAGE, PIPELINE
from tests.daemon_harness import status_validator

DAEMON = Settings()


def test_training_on_a_gpu_uses_the_trainers_own_defaults():
    trainer = TrainConfig(source=None, model_dir=None)
    assert (DAEMON.train_iterations, DAEMON.train_max_gaussians) == (trainer.iterations, DensifySettings().max_gaussians)


def test_training_on_the_cpu_uses_the_trainers_cpu_preview():
    preview = PRESETS["cpu-preview"]
    assert (DAEMON.train_cpu_iterations, DAEMON.train_cpu_max_gaussians) == (
        preview["iterations"], preview["densify"].max_gaussians)


def test_the_published_scene_is_filtered_with_the_trainers_outlier_defaults():
    filter_defaults = OutlierSettings()
    assert (DAEMON.publish_outlier_k, DAEMON.publish_outlier_std_ratio, DAEMON.publish_min_cluster_fraction) == (
        filter_defaults.k, filter_defaults.std_ratio, filter_defaults.min_cluster_fraction)


def test_a_sets_limits_are_the_same_whether_the_daemon_or_an_old_context_gives_them():
    assert SetLimits.from_settings(DAEMON.stage_settings()) == SetLimits() == SetLimits.from_settings({})


def test_the_published_schemas_name_the_stages_the_pipeline_runs():
    names = [spec.name for spec in PIPELINE]
    assert job_options_schema()["properties"]["stop_after"]["enum"] == names
    assert status_validator().schema["$defs"]["stage_name"]["enum"] == names


def test_every_job_option_says_which_stages_it_changes():
    """A retry reuses an earlier attempt's stages only while the options they depend on are equal
    (stages/registry.py): an option no stage lists would let a retry reuse a result it changed."""
    classified = {option for spec in PIPELINE for option in spec.options} | set(OPTIONS_OF_NO_STAGE)
    assert classified == set(job_options_schema()["properties"])
