"""Settings are validated at start: one clear line and exit code 78 for each kind of mistake."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from daemon.config import ConfigError, load_settings
from tests.daemon_harness import REPO


def _run(args: list[str], cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    import os

    return subprocess.run(
        [sys.executable, "-m", "daemon.cli", "run", "--until-idle", *args],
        cwd=cwd, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
    )


@pytest.fixture
def folders(tmp_path):
    for name in ("inbox", "outbox"):
        (tmp_path / name).mkdir()
    return tmp_path


@pytest.mark.parametrize(
    "toml, expected",
    [
        ("settle_secs = 5\n", "unknown setting 'settle_secs'"),
        ("settle_seconds = 'soon'\n", "setting 'settle_seconds' must be a number of seconds, got 'soon'"),
        ("threads = true\n", "setting 'threads' must be a whole number, got True"),
        ("watch_mode = 'inotify'\n", "setting 'watch_mode' must be one of native, polling"),
        ("[stage_timeouts]\ntrain = -1\n", "setting 'stage_timeouts.train' must be greater than 0"),
        ("[stage_timeouts]\nmesh = 10\n", "unknown stage 'stage_timeouts.mesh'"),
        ("inbox = [1]\n", "setting 'inbox' must be a folder path"),
        ("settle_seconds = \n", "is not valid TOML"),
        ("train_backend = 'gpu'\n", "setting 'train_backend' must be one of auto, cpu, cuda, got 'gpu'"),
        ("train_strategy = 'mcmc-aa'\n", "setting 'train_strategy' must be one of ours, default, mcmc, got 'mcmc-aa'"),
        ("trainer_command = 'python3 train.py'\n", "setting 'trainer_command' must be a list of strings"),
        ("train_cpu_iterations = 0\n", "setting 'train_cpu_iterations' must be a positive whole number, got 0"),
        ("publish_min_cluster_fraction = 1.5\n", "setting 'publish_min_cluster_fraction' must be between 0 and 1, got 1.5"),
        ("space_wait_hold_minutes = -5\n", "setting 'space_wait_hold_minutes' must be 0 or more, got -5"),
        ("private_by_default = 'yes'\n", "setting 'private_by_default' must be true or false, got 'yes'"),
    ],
)
def test_bad_settings_stop_the_daemon_with_one_line(folders, toml, expected):
    config = folders / "instarecon.toml"
    config.write_text(toml)
    result = _run(["--config", str(config)], folders)
    assert result.returncode == 78
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert expected in lines[0]


def test_missing_inbox_is_named(tmp_path):
    (tmp_path / "outbox").mkdir()
    result = _run([], tmp_path)
    assert result.returncode == 78
    assert result.stderr.strip() == f"instarecon: inbox folder {tmp_path / 'inbox'} does not exist (create it or set 'inbox')"


def test_outbox_that_is_not_a_folder_is_named(folders):
    blocker = folders / "not-a-folder"
    blocker.write_text("a file where the outbox should be")
    result = _run(["--outbox", str(blocker)], folders)
    assert result.returncode == 78
    assert "outbox folder" in result.stderr and "does not exist" in result.stderr


def test_state_folder_is_made_and_defaults_are_relative_to_the_working_directory(folders):
    result = _run([], folders)
    assert result.returncode == 0, result.stderr
    assert (folders / "state" / "jobs.sqlite3").exists()


def test_file_paths_are_relative_to_the_config_file_and_overrides_win(tmp_path):
    config = tmp_path / "etc" / "instarecon.toml"
    config.parent.mkdir()
    config.write_text('inbox = "../photos"\nsettle_seconds = 5\n')
    settings = load_settings(config, {"outbox": "/srv/out"}, environ={})
    assert settings.inbox == tmp_path / "photos"
    assert settings.outbox == Path("/srv/out")
    assert settings.settle_seconds == 5.0
    assert settings.resolved_database_url == f"sqlite:///{settings.state / 'jobs.sqlite3'}"


def test_config_comes_from_the_environment_when_not_given(tmp_path):
    config = tmp_path / "from-env.toml"
    config.write_text("settle_seconds = 7\n")
    assert load_settings(None, {}, environ={"INSTARECON_CONFIG": str(config)}).settle_seconds == 7.0
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(None, {}, environ={"INSTARECON_CONFIG": str(tmp_path / "missing.toml")})


def test_the_example_configuration_is_valid(tmp_path):
    settings = load_settings(REPO / "deploy" / "instarecon.example.toml", {}, environ={})
    assert settings.watch_mode in ("native", "polling")
