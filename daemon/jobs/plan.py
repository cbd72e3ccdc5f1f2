"""Which stages a job runs, and how their progress adds up to the job's."""

from __future__ import annotations

from typing import Mapping, Sequence

from daemon.jobs.records import NOT_STARTED, StageRecord, StageState
from stages.registry import StageSpec


def planned_stages(pipeline: Sequence[StageSpec], stop_after: str | None) -> tuple[StageSpec, ...]:
    """The pipeline's stages up to ``stop_after``; all of them when it names a stage not built yet."""
    names = [spec.name for spec in pipeline]
    if stop_after in names:
        return tuple(pipeline[: names.index(stop_after) + 1])
    return tuple(pipeline)


def overall_progress(
    plan: Sequence[StageSpec], records: Mapping[str, StageRecord], current: str | None, stage_percent: float
) -> float:
    """Done stages count in full, the running one in part, weighted by their usual duration."""
    total = sum(spec.progress_weight for spec in plan) or 1.0
    done = sum(spec.progress_weight for spec in plan if records.get(spec.name, NOT_STARTED).state is StageState.DONE)
    running = next((spec.progress_weight for spec in plan if spec.name == current), 0.0)
    if records.get(current or "", NOT_STARTED).state is StageState.DONE:
        running = 0.0
    return round(min(100.0, 100.0 * (done + running * stage_percent / 100.0) / total), 1)
