"""The job page shows the last lines of the job's log, in real headless Chromium, from what the
real daemon wrote: while the job runs (following status.json, without reloading the page) and
after it failed, folded away below the error; a line that looks like markup stays text."""

from __future__ import annotations

from tests.daemon_harness import make_layout, state_is, wait_for
from tests.log_stage import write_script
from tests.photo_sets import small_set
from tests.test_job_log import BUFFERED, HOSTILE, LoggingDaemon
from tests.test_site_browser import watch_dialogs

TAIL = "section.job-log pre.log-tail"


def _last_step(page) -> int:
    """The highest "step NN" the page's log lines show (0 for none)."""
    return page.evaluate("""selector => Math.max(0, ...[...document.querySelector(selector).textContent
                                .matchAll(/step (\\d+)/g)].map(match => Number(match[1])))""", TAIL)


def test_the_job_page_shows_the_log_tail_live_while_running_and_after_a_failure(tmp_path, serve_folder, open_page):
    layout = make_layout(tmp_path)
    env = write_script(tmp_path / "script.json", {
        "broken": {"lines": [HOSTILE, f"reading {layout.inbox}/broken/view-0.png"], "crash": True},
        "garden": {"lines": [f"step {number:02d}: {HOSTILE}" for number in range(1, 41)], "step": 0.3},
    })
    small_set(layout.inbox / "broken", ready=True, stop_after="sfm")
    base = serve_folder(layout.outbox)

    with LoggingDaemon(layout, env={**env, **BUFFERED}) as daemon:
        failed = wait_for(state_is(layout, "broken", "failed"), 120, "the broken set to fail")
        page = open_page(viewport=(900, 800))
        dialogs = watch_dialogs(page)
        page.goto(base + f"{failed['job_id']}/index.html")
        # after what went wrong and what to do about it, folded away until asked for
        folded = page.locator(".job-next ~ details.job-log")
        assert not folded.locator("pre.log-tail").is_visible()
        folded.locator("summary").click()
        tail = folded.locator("pre.log-tail")
        tail.wait_for()
        text = tail.text_content()
        assert text.splitlines()[-1].endswith("sfm: RuntimeError: the test stage gave up")
        assert f"sfm: {HOSTILE}" in text and "sfm: reading inbox/broken/view-0.png" in text
        assert str(tmp_path) not in text
        assert page.locator("img[src=x]").count() == 0
        style = tail.evaluate("element => [getComputedStyle(element).fontFamily, getComputedStyle(element).overflowY]")
        assert "monospace" in style[0] and style[1] == "auto", style

        small_set(layout.inbox / "garden", ready=True, stop_after="sfm")
        running = wait_for(lambda: (d := layout.status("garden")) and d["state"] == "running" and d["stage"] == "sfm"
                           and d, 120, "the garden set to run its logging stage")
        page_file = layout.outbox / running["job_id"] / "index.html"
        wait_for(lambda: page_file.exists() and "job-status.js" in page_file.read_text(), 30, "the running job's page")
        live = open_page(viewport=(900, 800))
        live_dialogs = watch_dialogs(live)
        live.goto(base + f"{running['job_id']}/index.html")
        live.evaluate("window.loadedOnce = true")  # gone if the page reloads
        live.wait_for_function("selector => /step \\d+/.test(document.querySelector(selector).textContent)", arg=TAIL,
                               timeout=30_000)
        first = _last_step(live)
        live.wait_for_function(
            """([selector, step]) => [...document.querySelector(selector).textContent.matchAll(/step (\\d+)/g)]
                   .some(match => Number(match[1]) >= step)""", arg=[TAIL, first + 6], timeout=30_000)
        assert live.evaluate("window.loadedOnce") is True, "the page reloaded instead of following status.json"
        assert live.locator("section.job-log").is_visible()
        shown = live.locator(TAIL).text_content().splitlines()
        steps = [line for line in shown if " sfm: step " in line]
        assert len(shown) <= 10 and len(steps) > 5 and all(line.endswith(f": {HOSTILE}") for line in steps), shown
        assert live.locator("img[src=x]").count() == 0  # put in as text by job-status.js, too
        wait_for(state_is(layout, "garden", "done"), 60, "the garden set to finish")
        assert daemon.stop() == 0

    assert dialogs == [] and live_dialogs == []
    page.assert_clean()
    live.assert_clean()
