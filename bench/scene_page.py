"""What does a job's scene page cost a visitor, how soon does it draw, and how far is its first frame from the poster?

    .venv/bin/python bench/scene_page.py [--job-dir outbox/demo-1] [--runs 3] [--throttle] [--save DIR]

Serves a finished job's page (its folder and the outbox's shared assets, copied into a temporary folder) from
127.0.0.1 and opens it in headless Chromium (/usr/bin/chromium, WebGL on SwiftShader) as a desktop (1280x800,
pixel ratio 1) and as a phone (390x844, touch, mobile, pixel ratio 3), each run in a fresh context with an empty
cache. Prints, per profile:

- page weight: response body bytes fetched until the viewer's container says data-state="ready", by kind
  (html/css/js, scene files, images, json), and scene.splat alone;
- time from navigation start to the first frame (the viewer hides the poster when it draws one) and to "ready".
  SwiftShader renders on the CPU, so these are this machine's CPU-rendering times: good for before/after on
  the same machine, not what a phone would do. --throttle repeats the runs on an emulated fast 4G network
  (9 Mbit/s down, 85 ms round trip);
- the needles measure: the canvas once ready (the overlay hidden, the start camera, which is the poster's),
  against poster.jpg (rendered by the trainer at training size) scaled with Lanczos to the rectangle where the
  viewer frames the training frame (centred, "contain" but filling at least 3/4 of a portrait screen's height, as
  frameFit() in assets/viewer/camera.js): PSNR over that rectangle's part on screen, over the whole canvas with
  the poster on black, and with the screenshot's rectangle scaled down to training size (where the poster needs
  no scaling: a gap that closes there is fine
  structure, such as thin Gaussians stretched into needles). A training-size window gives the floor of what
  the viewer and the trainer disagree on at all.

Several runs print the min and median of each number. --save keeps the screenshots and the scaled posters.
Nothing is asserted: these are numbers for the notes. Needs Python Playwright (never `playwright install`).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import shutil
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.browser_harness import CHROMIUM, CHROMIUM_ARGS, start_server  # noqa: E402

READY = '#viewer[data-state="ready"]'
FAILED = '#viewer[data-state="error"]'
HIDE_UI = ".viewer-ui, .job-panel { display: none !important; }\n"
HIDE_UI_FILE = "bench-hide-ui.css"  # a file from 'self': the page's CSP refuses inline styles
SCENE_SUFFIXES = (".splat", ".sog", ".ply", ".spz", ".ksplat")
FAST_4G = {"offline": False, "latency": 85, "downloadThroughput": 9e6 / 8, "uploadThroughput": 1.5e6 / 8}
PHONE_AGENT = ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
               "Chrome/124.0.0.0 Mobile Safari/537.36")
# Notes when the poster disappears (the viewer's first frame) and each data-state, on the page's own clock
# (performance.now(), zero at navigation start). An init script: Playwright injects it past the page's CSP.
WATCH = """
window.__bench = { firstFrame: null, states: [] };
new MutationObserver(() => {
  const viewer = document.getElementById('viewer');
  if (!viewer) return;
  const now = performance.now(), bench = window.__bench;
  const poster = viewer.querySelector('.viewer-poster');
  if (bench.firstFrame === null && poster && poster.hidden) bench.firstFrame = now;
  const last = bench.states[bench.states.length - 1];
  if (viewer.dataset.state && (!last || last[0] !== viewer.dataset.state)) bench.states.push([viewer.dataset.state, now]);
}).observe(document, { subtree: true, attributes: true, childList: true });
"""


@dataclass(frozen=True)
class Profile:
    name: str
    width: int
    height: int
    scale: float
    mobile: bool = False

    def context_options(self) -> dict:
        options = {"viewport": {"width": self.width, "height": self.height}, "device_scale_factor": self.scale}
        if self.mobile:
            options.update(is_mobile=True, has_touch=True, user_agent=PHONE_AGENT)
        return options


DESKTOP = Profile("desktop", 1280, 800, 1)
PHONE = Profile("phone", 390, 844, 3, mobile=True)


class PageStuck(RuntimeError):
    pass


def newest_done_job(outbox: Path) -> Path:
    """The most recently finished job in ``outbox`` that has a page and a scene."""
    done = []
    for status in outbox.glob("*/status.json"):
        document = json.loads(status.read_text())
        job = status.parent
        if document.get("state") == "done" and (job / "index.html").is_file() and (job / "scene.splat").is_file():
            done.append((document.get("finished_at") or "", job))
    if not done:
        raise SystemExit(f"no finished job with a scene in {outbox}: give --job-dir")
    return max(done)[1]


def stage_site(job: Path, root: Path) -> str:
    """Copy the job's folder and the outbox's shared assets under ``root``; the page's path from there."""
    shutil.copytree(job, root / job.name)
    shutil.copytree(job.parent / "assets", root / "assets")
    (root / HIDE_UI_FILE).write_text(HIDE_UI)
    return f"{job.name}/index.html"


def kind(url: str) -> str:
    path = urlsplit(url).path.lower()
    if path.endswith(SCENE_SUFFIXES):
        return "scene"
    if path.endswith((".html", ".css", ".js", ".mjs", "/")):
        return "html/css/js"
    if path.endswith((".jpg", ".jpeg", ".png", ".webp", ".svg", ".gif", ".avif")):
        return "images"
    if path.endswith(".json"):
        return "json"
    return "other"


def body_size(request) -> int:
    """Bytes of the response's body that arrived (a cancelled download counts what came before)."""
    try:
        size = request.sizes()["responseBodySize"]
    except Exception:  # failed before any response
        return 0
    response = request.response() if size == 0 and request.failure is None else None
    length = response and response.header_value("content-length")
    # Playwright reports 0 for a worker's script (sort-worker.js), which did arrive whole
    return int(length) if length else size


def psnr(image: np.ndarray, reference: np.ndarray) -> float:
    mse = np.mean((image.astype(np.float64) - reference.astype(np.float64)) ** 2) / 255.0**2
    return float("inf") if mse == 0 else -10.0 * math.log10(mse)


PORTRAIT_FILL = 0.75  # assets/viewer/camera.js


def frame_box(canvas: tuple[int, int], frame: tuple[int, int]) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the training frame as the viewer frames it, centred, in whole pixels; on a
    portrait screen its sides lie outside the canvas."""
    fit = max(min(canvas[0] / frame[0], canvas[1] / frame[1]), PORTRAIT_FILL * canvas[1] / frame[1])
    left, top = (canvas[0] - frame[0] * fit) / 2, (canvas[1] - frame[1] * fit) / 2
    return round(left), round(top), round(left + frame[0] * fit), round(top + frame[1] * fit)


def needles(shot: Image.Image, poster: Image.Image, frame: tuple[int, int]) -> tuple[dict, Image.Image]:
    """PSNRs of the screenshot against the poster (see the module's docstring) and the poster as compared."""
    left, top, right, bottom = frame_box(shot.size, frame)
    scaled = poster.resize((right - left, bottom - top), Image.LANCZOS)
    boxed = Image.new("RGB", shot.size)
    boxed.paste(scaled, (left, top))
    seen = (max(left, 0), max(top, 0), min(right, shot.size[0]), min(bottom, shot.size[1]))  # the part on screen
    inside = shot.crop(seen)
    part = (seen[0] - left, seen[1] - top, seen[2] - left, seen[3] - top)  # the same, in the scaled poster
    scaled = scaled.crop(part)
    per_pixel = poster.size[0] / (right - left)  # poster pixels a screen pixel
    poster = poster.crop(tuple(round(value * per_pixel) for value in part))
    shrunk = inside.resize(poster.size, Image.LANCZOS)
    return {
        "frame": psnr(np.asarray(inside), np.asarray(scaled)),
        "canvas": psnr(np.asarray(shot), np.asarray(boxed)),
        "at training size": psnr(np.asarray(shrunk), np.asarray(poster)),
    }, boxed


def describe_stuck(page, console: list[str], errors: list[str]) -> str:
    try:
        state = page.evaluate("({ ...(document.getElementById('viewer')?.dataset || {}), log: window.__bench })")
    except Exception as error:  # the page itself may be gone
        state = f"unreadable: {error}"
    lines = [f"viewer: {state}", "console:"] + [f"  {line}" for line in console or ["(nothing)"]]
    lines += ["page errors:"] + [f"  {line}" for line in errors or ["(none)"]]
    return "\n".join(lines)


def measure(browser, url: str, profile: Profile, throttle: bool, timeout_s: float, poster: Image.Image | None,
            frame: tuple[int, int], hide_ui_url: str, save: Path | None, label: str) -> dict:
    """One visit in a fresh context: bytes by kind, times, and (unthrottled) the needles measure."""
    context = browser.new_context(**profile.context_options())
    try:
        page = context.new_page()
        page.add_init_script(WATCH)
        console, errors, finished = [], [], []
        page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
        page.on("pageerror", lambda error: errors.append(str(error)))
        context.on("requestfinished", lambda request: finished.append(request))
        # a download the viewer cancels (over its splat budget) still cost the bytes that came
        context.on("requestfailed", lambda request: finished.append(request))
        if throttle:
            cdp = context.new_cdp_session(page)
            cdp.send("Network.enable")
            cdp.send("Network.emulateNetworkConditions", FAST_4G)
        page.goto(url, wait_until="commit")
        try:
            page.wait_for_selector(f"{READY}, {FAILED}", state="attached", timeout=timeout_s * 1000)
        except Exception as error:
            raise PageStuck(f"{profile.name}: not ready after {timeout_s:g} s ({type(error).__name__})\n"
                            + describe_stuck(page, console, errors)) from None
        if page.query_selector(FAILED):
            raise PageStuck(f"{profile.name}: the viewer failed\n" + describe_stuck(page, console, errors))
        bench = page.evaluate("window.__bench")
        fetched = list(finished)
        result = {"bytes": {}, "splat": 0, "requests": len(fetched)}
        for request in fetched:
            size = body_size(request)
            result["bytes"][kind(request.url)] = result["bytes"].get(kind(request.url), 0) + size
            if urlsplit(request.url).path.endswith("/scene.splat"):
                result["splat"] += size
        ready = next(t for state, t in bench["states"] if state == "ready")
        result["first frame"] = bench["firstFrame"]
        result["ready"] = ready
        result["viewer"] = page.evaluate(
            "(() => { const v = document.getElementById('viewer'), c = v.querySelector('canvas');"
            " return { buffer: [c.width, c.height], css: [c.clientWidth, c.clientHeight],"
            " loaded: Number(v.dataset.loadedSplats), truncated: v.dataset.truncated === 'true',"
            " coarse: matchMedia('(pointer: coarse)').matches }; })()")
        if throttle or poster is None:
            return result
        page.add_style_tag(url=hide_ui_url)
        page.evaluate("new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))")
        box = page.locator("#viewer canvas").bounding_box()
        shot = Image.open(io.BytesIO(page.screenshot(clip=box))).convert("RGB")
        result["psnr"], boxed = needles(shot, poster, frame)
        result["shot size"] = shot.size
        if save:
            shot.save(save / f"{label}-viewer.png")
            boxed.save(save / f"{label}-poster-scaled.png")
        return result
    finally:
        context.close()


def spread(values: list[float], unit: str = "", digits: int = 0) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}{unit}"
    return f"min {min(values):.{digits}f}{unit}, median {statistics.median(values):.{digits}f}{unit}"


def report(name: str, runs: list[dict], throttled: bool) -> None:
    first = runs[0]
    viewer = first["viewer"]
    print(f"{name}{' (fast 4G)' if throttled else ''}: canvas {viewer['css'][0]}x{viewer['css'][1]} CSS px, drawing"
          f" buffer {viewer['buffer'][0]}x{viewer['buffer'][1]}, {viewer['loaded']:,} splats"
          f"{' (truncated)' if viewer['truncated'] else ''}, coarse pointer {viewer['coarse']}")
    if not throttled and name != "training size":
        kinds = sorted({k for run in runs for k in run["bytes"]})
        weight = ", ".join(f"{k} {first['bytes'].get(k, 0) / 1e3:,.1f} kB" for k in kinds)
        total = sum(first["bytes"].values())
        print(f"  page weight until ready   {total / 1e3:,.1f} kB in {first['requests']} requests: {weight}")
        print(f"  scene.splat alone         {first['splat'] / 1e3:,.1f} kB")
    print(f"  first frame               {spread([r['first frame'] for r in runs], ' ms')}")
    print(f"  ready                     {spread([r['ready'] for r in runs], ' ms')}")
    if "psnr" in first:
        for key in first["psnr"]:
            print(f"  PSNR vs poster, {key:<17} {spread([r['psnr'][key] for r in runs], ' dB', 2)}"
                  + (f"  (screenshot {first['shot size'][0]}x{first['shot size'][1]})" if key == "frame" else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job-dir", type=Path, help="a finished job's outbox folder (default: the newest in outbox/)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--throttle", action="store_true", help="also time the page on an emulated fast 4G network")
    parser.add_argument("--save", type=Path, help="keep the screenshots and the scaled posters here")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds a page may take to be ready")
    args = parser.parse_args()
    job = (args.job_dir or newest_done_job(ROOT / "outbox")).resolve()
    if args.save:
        args.save.mkdir(parents=True, exist_ok=True)
    from playwright.sync_api import sync_playwright

    cameras = json.loads((job / "cameras.json").read_text())
    poster = Image.open(job / "poster.jpg").convert("RGB") if (job / "poster.jpg").is_file() else None
    with tempfile.TemporaryDirectory() as folder, sync_playwright() as playwright:
        root = Path(folder)
        page_path = stage_site(job, root)
        start = next((c for c in cameras if f'data-start-camera="{c["img_name"]}"' in (job / "index.html").read_text()),
                     cameras[0])
        frame = (start["width"], start["height"])
        sizes = f"poster {poster.size[0]}x{poster.size[1]}" if poster else "no poster"
        print(f"job {job} · start camera {start['img_name']}, training frame {frame[0]}x{frame[1]}, {sizes}")
        server, stop = start_server(root)
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            training = Profile("training size", *frame, 1)
            plans = [(DESKTOP, False), (PHONE, False), (training, False)]
            if args.throttle:
                plans += [(DESKTOP, True), (PHONE, True)]
            for profile, throttled in plans:
                runs = []
                for number in range(1 if profile is training else args.runs):
                    label = f"{profile.name.replace(' ', '-')}-{number + 1}"
                    runs.append(measure(browser, server.url + page_path, profile, throttled, args.timeout, poster,
                                        frame, server.url + HIDE_UI_FILE, args.save, label))
                report(profile.name, runs, throttled)
        except PageStuck as stuck:
            sys.stdout.flush()
            print(stuck, file=sys.stderr)
            raise SystemExit(1) from None
        finally:
            browser.close()
            stop()


if __name__ == "__main__":
    main()
