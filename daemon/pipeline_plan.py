"""Which stages a job runs, and how their progress adds up to the job's."""

from __future__ import annotations

from typing import Mapping, Sequence

from stages.registry import StageSpec


def planned_stages(pipeline: Sequence[StageSpec], stop_after: str | None) -> tuple[StageSpec, ...]:
    """The pipeline's stages up to ``stop_after``; all of them when it names a stage not built yet."""
    names = [spec.name for spec in pipeline]
    if stop_after in names:
        return tuple(pipeline[: names.index(stop_after) + 1])
    return tuple(pipeline)


def overall_progress(
    plan: Sequence[StageSpec], stage_states: Mapping[str, Mapping], current: str | None, stage_percent: float
) -> float:
    """Done stages count in full, the running one in part, weighted by their usual duration."""
    total = sum(spec.progress_weight for spec in plan) or 1.0
    done = sum(spec.progress_weight for spec in plan if stage_states.get(spec.name, {}).get("state") == "done")
    running = next((spec.progress_weight for spec in plan if spec.name == current), 0.0)
    if stage_states.get(current or "", {}).get("state") == "done":
        running = 0.0
    return round(min(100.0, 100.0 * (done + running * stage_percent / 100.0) / total), 1)
