"""How long does the outbox's website take to build and to follow one job's change, with many jobs?

    .venv/bin/python bench/site_build.py [--jobs 5000] [--page-size 60]

Builds the site for ``--jobs`` finished jobs (status documents as the daemon writes them, with
their files in the outbox, into a temporary folder), then measures what the daemon does when
one job changes state: that job's page plus the gallery (the pages whose bytes changed are
rewritten, the rest only read). Prints the times and the sizes a browser loads for the
gallery's first page. Nothing is asserted: these are numbers for the notes.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from site_builder import build_site, job_view, write_gallery, write_job_page
from site_builder.gallery import INDEX_JSON


def status_document(number: int) -> dict:
    created = f"2026-{1 + number // 8000 % 12:02d}-{1 + number // 300 % 28:02d}T{number // 12 % 24:02d}:{number % 60:02d}:00Z"
    return {
        "schema_version": 1, "job_id": f"set{number:05d}-1", "name": f"photo set {number}", "attempt": 1,
        "state": "done", "stage": "publish",
        "stages": {stage: {"state": "done", "started_at": None, "finished_at": None, "seconds": 60.0}
                   for stage in ("ingest", "sfm", "train", "evaluate", "publish")},
        "progress": 100.0, "eta_seconds": None, "message": "done after publish", "host": "bench",
        "created_at": created, "started_at": created, "finished_at": created, "updated_at": created,
        "images": {"found": 40, "accepted": 40, "rejected": []},
        "metrics": {"evaluate": {"psnr": 24.5, "ssim": 0.82, "lpips": 0.21},
                    "publish": {"gaussians": 400_000, "splat_bytes": 12_800_000, "ply_bytes": 99_000_000, "view": "IMG_0001"}},
        "outputs": {}, "options": None, "warnings": [], "error": None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--page-size", type=int, default=60)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        outbox = Path(folder)
        documents = [status_document(number) for number in range(args.jobs)]
        for document in documents:
            job_dir = outbox / document["job_id"]
            job_dir.mkdir()
            for name in ("scene.splat", "scene.ply", "cameras.json", "poster.jpg", "thumb.jpg"):
                (job_dir / name).touch()

        started = time.perf_counter()
        views = [job_view(document, outbox / document["job_id"]) for document in documents]
        viewed = time.perf_counter()
        written = build_site(outbox, views, "bench")
        built = time.perf_counter()
        again = build_site(outbox, views, "bench")
        rebuilt = time.perf_counter()

        changed = replace(views[-1], state="failed", error_message="bench")
        views[-1] = changed
        step = time.perf_counter()
        write_job_page(outbox, changed, "bench")
        write_gallery(outbox, views, "bench", page_size=args.page_size)
        one_change = time.perf_counter() - step

        print(f"jobs                               {args.jobs:,}")
        print(f"views from status documents        {viewed - started:.2f} s")
        print(f"first build (every file written)   {built - viewed:.2f} s, {written:,} files")
        print(f"full rebuild, nothing changed      {rebuilt - built:.2f} s, {again} files written")
        print(f"one job changed (page + gallery)   {one_change * 1000:.0f} ms")
        print(f"gallery first page                 {(outbox / 'index.html').stat().st_size / 1000:.0f} KB"
              f", {args.page_size} jobs, {len(list(outbox.glob('page-*.html'))) + 1} pages")
        print(f"{INDEX_JSON}                          {(outbox / INDEX_JSON).stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
