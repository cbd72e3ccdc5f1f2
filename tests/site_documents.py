"""Test helper: status.json documents as the daemon writes them, for the site builder's tests."""

from __future__ import annotations

from typing import Any, Mapping

from tests.daemon_harness import validate_status

STAGES = ("ingest", "sfm", "train", "evaluate", "publish")


def status_document(job_id: str, name: str, state: str, *, created: str = "2026-11-27T10:00:00Z",
                    published: bool | Mapping[str, Any] = False, error: dict | None = None,
                    progress: float = 0.0) -> dict[str, Any]:
    """A status.json as the daemon writes it (checked against the schema); ``published`` adds the
    metrics of the train, evaluate and publish stages (a mapping overrides publish's)."""
    done = state == "done"
    metrics: dict[str, Any] = {}
    if published:
        metrics = {
            "train": {"iterations": 2000, "gaussians": 51_000},
            "evaluate": {"psnr": 25.0812, "ssim": 0.8871, "lpips": 0.1234},
            "publish": {"gaussians": 49_874, "splat_bytes": 1_595_968, "sog_bytes": 842_000, "ply_bytes": 11_900_000,
                        "view": "view03.jpg",
                        **(published if isinstance(published, Mapping) else {})},
        }
    document = {
        "schema_version": 1, "job_id": job_id, "name": name, "attempt": 1, "state": state,
        "stage": "publish" if done else ("sfm" if state == "running" else None),
        "stages": {stage: {"state": "done" if done else "pending", "started_at": None, "finished_at": None,
                           "seconds": 12.5 if done else None} for stage in STAGES},
        "progress": 100.0 if done else progress, "eta_seconds": None,
        "message": "done after publish" if done else f"{state} message",
        "host": "test", "created_at": created, "started_at": None, "finished_at": None, "updated_at": created,
        "images": {"found": 24, "accepted": 23, "rejected": [{"file": "blurry.jpg", "reason": "too blurry"}]},
        "metrics": metrics, "outputs": {}, "options": None, "warnings": [], "error": error,
        "page": f"{job_id}/index.html", "page_url": None,
    }
    return validate_status(document)
