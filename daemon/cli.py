"""The ``instarecon`` command: run the daemon, and look at or steer its jobs."""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Sequence

from daemon import __version__
from inbox_protocol.file_names import display_name
from stages.registry import STAGE_NAMES


def _common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="TOML configuration file (default: $INSTARECON_CONFIG)")
    parser.add_argument("--inbox", help="folder where photo sets are dropped")
    parser.add_argument("--outbox", help="folder for published results")
    parser.add_argument("--state", help="folder for the job database and work folders")
    parser.add_argument("--database-url", dest="database_url", help="SQLAlchemy URL (default: SQLite in --state)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="instarecon", description="Drop photos into the inbox, get a 3D Gaussian splat.")
    parser.add_argument("--version", action="version", version=f"instarecon {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run the daemon")
    _common_options(run)
    run.add_argument("--until-idle", action="store_true", help="exit once no set is waiting, queued or running")
    run.add_argument("--host-name", dest="host_name",
                     help="this daemon's name, over the configuration's host_name (instarecon@N.service: HOST-gpuN)")

    status = commands.add_parser("status", help="list the daemons and jobs, newest first, or show one job")
    _common_options(status)
    status.add_argument("job", nargs="?", help="job id")
    status.add_argument("--json", action="store_true", help="print status.json documents")
    status.add_argument("--limit", type=int, default=50, help="at most this many jobs (default 50)")
    # not --state: every command's --state names the state folder
    status.add_argument("--only", type=job_states, action="append", metavar="STATE",
                        help=f"only jobs in this state ({', '.join(STATE_WORDS)}); several: failed,cancelled")
    status.add_argument("--since", type=moment, metavar="WHEN",
                        help="only jobs created since: 2026-12-01, 2026-12-01T14:00 (UTC unless it says), 2d, 12h")

    events = commands.add_parser("events", help="a job's event log: every change of state and stage, oldest first")
    _common_options(events)
    events.add_argument("job", help="job id")
    events.add_argument("--json", action="store_true", help="print the events as a JSON list")

    cancel = commands.add_parser("cancel", help="cancel a waiting, queued or running job")
    _common_options(cancel)
    cancel.add_argument("job")

    retry = commands.add_parser("retry", help="run a done, failed or cancelled job's set again")
    _common_options(retry)
    retry.add_argument("job")
    retry.add_argument("--from", dest="from_stage", choices=STAGE_NAMES, metavar="STAGE",
                       help=f"start from this stage ({', '.join(STAGE_NAMES)}), reusing the job's results of the "
                            "stages before it while the photos and the options they depend on are unchanged; "
                            "default: the stage a failed or cancelled job ended in, the beginning for a done one")

    remove = commands.add_parser("remove", help="delete a job's published results and page, and mark it removed")
    _common_options(remove)
    remove.add_argument("job")
    remove.add_argument("--yes", action="store_true", help="delete (without: only say what would be deleted)")

    doctor = commands.add_parser("doctor", help="check this machine and the configuration")
    _common_options(doctor)

    fetch = commands.add_parser("fetch-weights", help="fetch LPIPS's weights once (checked by SHA-256), which turns LPIPS on")
    _common_options(fetch)
    fetch.add_argument("--from", dest="base_url", metavar="BASE_URL",
                       help="a mirror holding alexnet-owt-7be5be79.pth (default: https://download.pytorch.org/models/)")
    fetch.add_argument("--check", action="store_true", help="fetch nothing: exit 0 if both files are there and sound, else 1")

    demo = commands.add_parser("demo-set", help="write a synthetic photo set (for trying the service)")
    demo.add_argument("folder", type=Path)
    demo.add_argument("--views", type=int, default=24)
    demo.add_argument("--size", default="800x600", help="WIDTHxHEIGHT (default 800x600)")
    demo.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "demo-set":
        return _demo_set(args)
    if args.command == "status" and args.state in STATE_WORDS and not Path(args.state).is_dir():
        print(f"instarecon: --state names the state folder; the jobs in a state: --only {args.state}", file=sys.stderr)
        return 2
    if args.command == "status" and args.job is not None and (args.only or args.since):
        print("instarecon: --only and --since choose jobs for the list; give them without a job id", file=sys.stderr)
        return 2

    from daemon.config import EXIT_CONFIG, ConfigError, check_folders, load_settings

    overrides = {key: getattr(args, key, None) for key in ("inbox", "outbox", "state", "database_url", "host_name")}
    try:
        settings = load_settings(args.config, overrides)
        if args.command == "run":
            check_folders(settings)
    except ConfigError as error:
        print(f"instarecon: {error}", file=sys.stderr)
        return EXIT_CONFIG

    if args.command == "run":
        return _run(settings, args.until_idle)
    if args.command == "doctor":
        from daemon.doctor import run_doctor

        return run_doctor(settings)
    if args.command == "fetch-weights":
        return _fetch_weights(settings, args.base_url, args.check)
    url = settings.resolved_database_url
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        print(f"instarecon: no job database yet at {url} (has `instarecon run` started?)", file=sys.stderr)
        return 1
    from daemon.store import open_store
    from daemon.store.outage import describe, is_outage

    try:
        store = open_store(settings.resolved_database_url)
    except Exception as error:
        if not is_outage(error):
            raise
        print(f"instarecon: the job store does not answer: {describe(error)}", file=sys.stderr)
        return 1
    if args.command == "status":
        states = None if args.only is None else {state for given in args.only for state in given}
        return _status(settings, store, args.job, args.json, args.limit, states, args.since)
    if args.command == "events":
        return _events(store, args.job, args.json)
    if args.command == "cancel":
        return _cancel(store, args.job)
    if args.command == "remove":
        return _remove(settings, store, args.job, args.yes)
    return _retry(settings, store, args.job, args.from_stage)


def _run(settings, until_idle: bool) -> int:
    from daemon.journal import setup_logging
    from daemon.service import Daemon, install_signal_handlers

    setup_logging(settings.log_level)
    daemon = Daemon(settings)
    install_signal_handlers(daemon)
    return daemon.run(until_idle=until_idle)


def _status(settings, store, job_id: str | None, as_json: bool, limit: int, states=None,
            since: datetime | None = None) -> int:
    from daemon.jobs.folders import JobFolders
    from daemon.report.status_document import build_status
    from daemon.store import DaemonRegistry
    from stages.registry import PIPELINE

    if job_id is not None:
        job = store.get(job_id)
        if job is None:
            print(f"instarecon: no job {job_id!r}", file=sys.stderr)
            return 1
        document = build_status(job, PIPELINE, JobFolders.of(settings, job), _folder_names(settings), settings.public_url)
        if as_json:
            print(json.dumps(document, indent=2, ensure_ascii=False))
        else:
            print(_describe(document))
        return 0
    jobs = store.list_jobs(states=states, limit=limit, created_since=since)
    if as_json:
        names = _folder_names(settings)
        documents = [build_status(job, PIPELINE, JobFolders.of(settings, job), names, settings.public_url) for job in jobs]
        print(json.dumps(documents, indent=2, ensure_ascii=False))
        return 0
    print(_daemons_table(DaemonRegistry(store.engine).daemons()))
    print()
    if not jobs:
        print("no jobs yet" if states is None and since is None else "no jobs match")
        return 0
    rows = [("JOB", "STATE", "STAGE", "PROGRESS", "HOST", "UPDATED", "MESSAGE")]
    for job in jobs:
        updated = job.updated_at.astimezone().strftime("%Y-%m-%d %H:%M:%S")
        rows.append((job.id, str(job.state), job.stage or "-", f"{job.progress:.0f}%", job.host or "-", updated,
                     job.message))
    print(_table(rows))
    return 0


STATE_WORDS = ("waiting", "queued", "running", "done", "failed", "cancelled", "removed")  # JobState's, without the import
_AGE = re.compile(r"(\d+)([dh])")


def job_states(text: str) -> list[str]:
    """``--only``'s value: one state, or several joined by commas."""
    words = [word.strip().lower() for word in text.split(",") if word.strip()]
    wrong = [word for word in words if word not in STATE_WORDS]
    if wrong or not words:
        raise argparse.ArgumentTypeError(f"{text!r} is not a job state: give one of {', '.join(STATE_WORDS)} "
                                         "(several joined by commas)")
    return words


def moment(text: str, now: datetime | None = None) -> datetime:
    """``--since``'s value: an age (2d, 12h) before now, or a date (its midnight) or date and time,
    in UTC unless it names its zone."""
    if age := _AGE.fullmatch(text.strip().lower()):
        number, unit = int(age.group(1)), age.group(2)
        return (now or datetime.now(timezone.utc)) - timedelta(days=number if unit == "d" else 0,
                                                               hours=number if unit == "h" else 0)
    try:
        given = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time: give a date (2026-12-01), a date and time (2026-12-01T14:00, UTC unless it "
            "ends in a zone such as +01:00), or an age in days or hours (2d, 12h)") from None
    return given.replace(tzinfo=timezone.utc) if given.tzinfo is None else given.astimezone(timezone.utc)


def _events(store, job_id: str, as_json: bool) -> int:
    """The job store's log of the job: one row per change of state or of a stage, as it was written."""
    from daemon.jobs.records import iso

    if store.get(job_id) is None:
        print(f"instarecon: no job {job_id!r}", file=sys.stderr)
        return 1
    events = [{"at": iso(event["at"]), "kind": event["kind"], "state": event["state"], "stage": event["stage"],
               "message": event["message"]} for event in store.events(job_id)]
    if as_json:
        print(json.dumps(events, indent=2, ensure_ascii=False))
        return 0
    rows = [("AT (UTC)", "KIND", "STATE", "STAGE", "MESSAGE")]
    rows += [(event["at"], event["kind"], event["state"] or "-", event["stage"] or "-", event["message"])
             for event in events]
    print(_table(rows, fit=False))
    return 0


def _daemons_table(daemons) -> str:
    """Every daemon sharing this job store: alive, stopped, or silent (no heartbeat for three
    intervals: died, hung, or cut off from the database), by the database's clock."""
    if not daemons:
        return "no daemon has started on this job store yet"
    rows = [("DAEMON", "CONDITION", "HEARTBEAT", "VERSION", "DOING")]
    for daemon in daemons:
        job = daemon.current_job
        doing = f"{display_name(job['name'])} ({job['job_id']}): {job.get('stage') or 'starting'} {job.get('progress', 0):.0f}%" \
            if job and daemon.state == "running" else daemon.state
        if daemon.problems:
            doing += "; " + "; ".join(daemon.problems)
        rows.append((daemon.host, daemon.condition, f"{_duration(daemon.seconds_since_seen)} ago", daemon.version, doing))
    return _table(rows)


def _folder_names(settings):
    """The same short folder names in log lines as the daemon's status.json has."""
    from daemon.jobs.log import FolderNames

    return FolderNames.of(settings.inbox, settings.outbox, settings.state)


def _table(rows: list[tuple[str, ...]], fit: bool = True) -> str:
    """Columns; the last one cut to the terminal's width when ``fit``."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    room = max(20, shutil.get_terminal_size((120, 20)).columns - sum(widths) - 2 * len(widths)) if fit else None
    lines = []
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths)]
        last = row[-1] if room is None or len(row[-1]) <= room else row[-1][: room - 1] + "…"
        lines.append("  ".join([*cells, last]).rstrip())
    return "\n".join(lines)


def _describe(document: dict) -> str:
    lines = [
        f"job       {document['job_id']}  (set '{display_name(document['name'])}', attempt {document['attempt']})",
        f"state     {document['state']}  {document['progress']:.0f}%  {document['message']}",
    ]
    if document["eta_seconds"] is not None:
        lines.append(f"left      about {_duration(document['eta_seconds'])} in {document['stage']}")
    for name, stage in document["stages"].items():
        seconds = "" if stage["seconds"] is None else f"  {stage['seconds']:.1f} s"
        lines.append(f"  {name:<9} {stage['state']}{seconds}")
    images = document["images"]
    if images["found"] is not None:
        lines.append(f"photos    {images['accepted']} accepted of {images['found']} found")
        lines.extend(f"  rejected {item['file']}: {item['reason']}" for item in images["rejected"])
    if document["error"]:
        error = document["error"]
        lines.append(f"error     [{error['stage']}] {error['message']}")
        if error["hint"]:
            lines.append(f"hint      {error['hint']}")
    lines.extend(metric_lines(document["metrics"]))
    lines.extend(f"warning   {warning}" for warning in document["warnings"])
    lines.extend(f"output    {name}: {path}" for name, path in document["outputs"].items())
    return "\n".join(lines)


def metric_lines(metrics: dict) -> list[str]:
    """The numbers people look for first, one line per stage that has them."""
    lines = []
    if sfm := metrics.get("sfm"):
        lines.append(f"sfm       {sfm['registered']}/{sfm['total']} photos placed, {sfm['points']:,} points, "
                     f"reprojection error {sfm['mean_reprojection_error']} px")
    if train := metrics.get("train"):
        lines.append(f"train     {train['iterations']:,} iterations on {train['backend']} at 1/{train['resolution_scale']} "
                     f"size, {train['gaussians'] or 0:,} Gaussians")
    if (scores := metrics.get("evaluate")) and scores.get("psnr") is not None:
        lpips = "n/a" if scores["lpips"] is None else f"{scores['lpips']:.3f}"
        # a set too small to hold a photo out is scored on its training views: said as such, never as held out
        on = ("held-out photos" if scores.get("scored_on", "held-out photos") == "held-out photos"
              else "training views (too few photos to hold one out)")
        lines.append(f"scores    {scores['images']} {on}: PSNR {scores['psnr']:.2f} dB (flat mean colour "
                     f"{scores['mean_colour_psnr']:.2f} dB), SSIM {scores['ssim']:.3f}, LPIPS {lpips}")
    return lines


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min {seconds} s" if minutes else f"{seconds} s"


def _cancel(store, job_id: str) -> int:
    from daemon.store import TERMINAL_STATES

    job = store.get(job_id)
    if job is None:
        print(f"instarecon: no job {job_id!r}", file=sys.stderr)
        return 1
    if job.state in TERMINAL_STATES:
        print(f"instarecon: job {job_id} is already {job.state}", file=sys.stderr)
        return 1
    job = store.request_cancel(job_id, "cancelled by `instarecon cancel`")
    if job.state == "cancelled":
        print(f"{job_id}: cancelled")
    else:
        print(f"{job_id}: cancel requested; the running stage is being stopped")
    return 0


def _retry(settings, store, job_id: str, from_stage: str | None) -> int:
    from daemon.intake.set_intake import SetIntake
    from daemon.intake.settle_clock import SettleClock

    job = store.get(job_id)
    if job is None:
        print(f"instarecon: no job {job_id!r}", file=sys.stderr)
        return 1
    try:
        new_job = SetIntake(settings, store, SettleClock(settings.settle_seconds)).retry(job, from_stage)
    except ValueError as error:
        print(f"instarecon: {error}", file=sys.stderr)
        return 1
    print(f"{new_job.id}: queued (attempt {new_job.attempt} of set '{display_name(new_job.set_name)}')")
    return 0


def _remove(settings, store, job_id: str, confirmed: bool) -> int:
    """Delete the job's folder in the outbox (its page, results and status.json), mark the job
    removed, and write the gallery without it: under the site lock the daemons write the site
    under, so it holds with a daemon running or without one. Nothing else is deleted: not the
    inbox, not the work folder, nothing in the outbox but that one folder."""
    from daemon.jobs.folders import JobFolders
    from daemon.report.site_lock import site_lock
    from daemon.report.site_publisher import listed_views, unpublish
    from daemon.report.status_document import build_status
    from daemon.store import JobState
    from site_builder import write_gallery
    from stages.registry import PIPELINE

    job = store.get(job_id)
    if job is None:
        print(f"instarecon: no job {job_id!r}", file=sys.stderr)
        return 1
    running = f"instarecon: job {job_id} is running; cancel it first (`instarecon cancel {job_id}`), then remove it"
    if job.state == JobState.RUNNING:
        print(running, file=sys.stderr)
        return 1
    folder = JobFolders.of(settings, job).outbox
    linked = folder.is_symlink()
    files = [] if linked or not folder.is_dir() else sorted(
        p for p in folder.rglob("*") if not p.is_dir() or p.is_symlink())
    if job.state == JobState.REMOVED and not linked and not folder.is_dir():
        print(f"{job_id}: already removed, and nothing of it is in the outbox")
        return 0
    if not confirmed:
        if linked:
            print(f"would delete the link {folder} (not what it points to)")
        elif folder.is_dir():
            size = sum(p.lstat().st_size for p in files)
            print(f"would delete {folder}/ ({len(files)} files, {size / 1e6:.1f} MB):")
            print("\n".join(f"  {p.relative_to(folder)}" for p in files))
        else:
            print(f"{folder} does not exist: nothing to delete there")
        if job.state != JobState.REMOVED:
            print(f"would mark job {job_id} ({job.state}) removed in the job store")
        print(f"and write the gallery without it. Nothing done: `instarecon remove {job_id} --yes` does it.")
        return 1
    with site_lock(store.engine, settings.state):
        job = store.get(job_id)
        if job.state != JobState.REMOVED and not store.mark_removed(job_id, "removed by `instarecon remove`"):
            job = store.get(job_id)
            now = running if job.state == JobState.RUNNING else f"instarecon: job {job_id} is now {job.state}; nothing deleted"
            print(now, file=sys.stderr)
            return 1
        deleted = unpublish(settings.outbox, job.outbox_name)
        names = _folder_names(settings)
        documents = [build_status(each, PIPELINE, JobFolders.of(settings, each), names, settings.public_url) for each in store.list_jobs()]
        write_gallery(settings.outbox, listed_views(settings.outbox, documents), __version__)
    print(f"{job_id}: removed; {deleted} files deleted with {folder}/; the gallery no longer lists it")
    return 0


def _fetch_weights(settings, base_url: str | None, check_only: bool) -> int:
    from stages import lpips_weights

    folder = settings.lpips_weights_dir
    if check_only:
        problems = lpips_weights.problems(folder)
        for problem in problems:
            print(problem)
        return 1 if problems else 0
    try:
        lpips_weights.fetch_all(folder, base_url or lpips_weights.DEFAULT_BASE_URL)
    except (lpips_weights.WeightsError, OSError) as error:
        for line in str(error).splitlines():
            print(f"instarecon: {line}", file=sys.stderr)
        print(f"instarecon: LPIPS stays off until both files are in {folder}", file=sys.stderr)
        return 1
    print(f"LPIPS weights in {folder}: LPIPS is on for the jobs evaluated from now")
    return 0


def _demo_set(args) -> int:
    from daemon.demo_set import write_demo_set

    try:
        width, height = (int(part) for part in args.size.lower().split("x"))
    except ValueError:
        print(f"instarecon: --size must look like 800x600, got {args.size!r}", file=sys.stderr)
        return 2
    views = write_demo_set(args.folder, views=args.views, width=width, height=height, seed=args.seed)
    print(f"wrote {len(views)} photos ({width}x{height}) and a READY marker into {args.folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
