"""Test helper: status.json documents as the daemon writes them, for the site builder's tests."""

from __future__ import annotations

from typing import Any, Mapping

from tests.daemon_harness import validate_status

STAGES = ("ingest", "sfm", "train", "evaluate", "publish")
HELD_OUT = ("view00", "view08", "view16")  # the photos a published document holds out (every 8th of the placed)
UNPLACED_REASON = "it shares too few features with the other photos to be placed"


def held_out_files(stem: str) -> tuple[str, str]:
    """The held-out photo and our render of it, as the evaluate stage names them in the job's outbox folder."""
    return f"heldout-{stem}-photo.jpg", f"heldout-{stem}-render.jpg"


def status_document(job_id: str, name: str, state: str, *, created: str = "2026-11-27T10:00:00Z",
                    published: bool | Mapping[str, Any] = False, error: dict | None = None,
                    progress: float = 0.0) -> dict[str, Any]:
    """A status.json as the daemon writes it (checked against the schema); ``published`` adds the
    metrics of the sfm, train, evaluate and publish stages (a mapping overrides publish's)."""
    done = state == "done"
    metrics: dict[str, Any] = {}
    if published:
        metrics = {
            "sfm": {"registered": 22, "total": 23, "train": 19, "test": 3, "unregistered": ["dark.jpg"],
                    "unplaced": [{"file": "dark.jpg", "reason": UNPLACED_REASON}]},
            "train": {"iterations": 2000, "gaussians": 51_000},
            "evaluate": {"scored_on": "held-out photos", "psnr": 25.0812, "ssim": 0.8871, "lpips": 0.1234, "mean_colour_psnr": 14.4372,
                         "resolution": "199x149", "images": len(HELD_OUT),
                         "held_out": [{"name": f"{stem}.jpg", "psnr": 24.1 + number, "ssim": 0.87, "lpips": 0.21,
                                       "photo": held_out_files(stem)[0], "render": held_out_files(stem)[1]}
                                      for number, stem in enumerate(HELD_OUT)]},
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
