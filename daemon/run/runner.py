"""Takes one claimed job through its planned stages, each in a supervised child process.

Stages whose ``result.json`` already exists are not run again: that is what makes a
job resume where it stopped after the daemon was killed.

A stage that fills the disk (it says "No space left on device", or it dies without a word while
the disk is full) does not fail its job: the job goes back to waiting for space with the stages
it finished, and resumes at that stage once more is free than the stage had.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from daemon.config import Settings
from daemon.jobs.folders import JobFolders
from daemon.jobs.log import JOB_LOG_FILE, JobLog
from daemon.jobs.options import JobOptionsError, read_job_options
from daemon.jobs.plan import overall_progress, planned_stages
from daemon.jobs.records import NOT_STARTED, JobError, StageRecord, StageState
from daemon.jobs.reuse import plan_reuse, take_over
from daemon.journal import job_fields, level_for_priority
from daemon.run.claim_folder import ClaimFolder
from daemon.run.disk_guard import (
    DiskGuard,
    DiskNeed,
    SetSize,
    Shortage,
    disk_full_words,
    disk_usage,
    estimate_writes,
    measure_set,
    size_text,
)
from daemon.run.lease import JobLease
from daemon.run.progress_writer import ProgressWriter
from daemon.run.space_waits import SpaceWaits
from daemon.run.supervisor import ChildOutcome, ChildWatch, Ending, describe_exit, run_child
from daemon.store import JobRecord, JobState, JobStore
from daemon.store.outage import PatientStore, StoreOutage, is_outage
from inbox_protocol.photo_digests import set_digests
from inbox_protocol.photo_set import FileRules
from stages.atomic_files import atomic_write_json, remove_temporaries
from stages.base import ASK_THE_OPERATOR, StageContext, StageResult
from stages.compute_backend import training_backend
from stages.registry import StageSpec

log = logging.getLogger("instarecon.job")

# The runner changes only the job it runs: never one that is, by now, queued or ended
RUNNING_ONLY = (JobState.RUNNING,)


@dataclass(frozen=True)
class JobRun:
    """One claim's run of a job, as every step of it reads it; ``stage_records`` is updated in
    place as stages end."""

    job: JobRecord
    options: Mapping[str, Any]
    plan: Sequence[StageSpec]
    stage_records: dict[str, StageRecord]
    claim: ClaimFolder
    lease: JobLease

    @property
    def folders(self) -> JobFolders:
        return self.claim.folders


class JobRunner:
    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        pipeline: Sequence[StageSpec],
        stop_requested: threading.Event,
        on_change: Callable[[], None],
        outage: StoreOutage,
    ):
        self._settings = settings
        # a stage's start and end wait out a database outage; progress and cancel checks do not
        self._store = PatientStore(store, outage, stop_requested)
        self._outage = outage
        self._pipeline = pipeline
        self._stop_requested = stop_requested
        self._on_change = on_change  # wakes the main loop so status.json follows at once
        self._disk = DiskGuard(settings.state, settings.outbox, settings.min_free_gb)
        self.space_waits = SpaceWaits(settings.space_wait_hold_minutes * 60)
        # what to ask the disk again for each job waiting for space: its record, stages left, options
        self._waiting: dict[str, tuple[JobRecord, Sequence[StageSpec], Mapping[str, Any]]] = {}
        # a job whose stage filled the disk needs at least this before that stage runs again
        self._floors: dict[str, tuple[str, DiskNeed]] = {}

    def run(self, job: JobRecord) -> JobState:
        """Run what is left of ``job``; returns the state it ends in (QUEUED if interrupted, or
        waiting for disk space: then it is in ``space_waits``)."""
        try:
            ending = self._run(job)
            self._tidy_claims(job, ending)
            return ending
        finally:
            if job.id not in self._waiting:
                self.space_waits.forget(job.id)
                self._floors.pop(job.id, None)

    def _tidy_claims(self, job: JobRecord, ending: JobState) -> None:
        """Once the job has ended here, the claim folders it no longer needs: all of them when it is
        done, the others' when it failed or was cancelled (this claim's failed stage stays, to be
        looked into); nothing when it goes on elsewhere or later."""
        if job.lease_epoch is None:
            return
        folders = JobFolders.of(self._settings, job)
        if ending is JobState.DONE:
            shutil.rmtree(folders.claims, ignore_errors=True)
        elif ending in (JobState.FAILED, JobState.CANCELLED):
            ClaimFolder(folders, job.lease_epoch).remove_other_claims()

    def _run(self, job: JobRecord) -> JobState:
        self._waiting.pop(job.id, None)
        folders = JobFolders.of(self._settings, job)
        folders.work.mkdir(parents=True, exist_ok=True)
        options = job.options
        if options is None:
            try:
                options = read_job_options(Path(job.source_path), FileRules(self._settings.ignore_patterns))
            except JobOptionsError as error:
                hint = error.hint or "fix job.toml; the set runs again once it changes"
                return self._fail(job, self._pipeline[0].name, str(error), hint)
            self._store.update_fields(job.id, options=options)
        plan = planned_stages(self._pipeline, options["stop_after"])
        lease = JobLease(self._store.raw, job, self._outage)
        run = JobRun(job, options, plan, dict(job.stages), ClaimFolder(folders, job.lease_epoch), lease)
        reused: dict[str, str] = {}
        if job.retry_request is not None and not any(folders.result(spec.name).exists() for spec in plan):
            reused = self._take_over_earlier_stages(run)
        for spec in plan:
            lease.keep()
            if lease.lost:
                return JobState.RUNNING  # not ours any more (see JobLease): nothing more is written
            result_path = folders.result(spec.name)
            if result_path.exists():
                if run.stage_records.get(spec.name, NOT_STARTED).state is not StageState.DONE:
                    # taken over from an earlier attempt, or finished before the daemon died, unrecorded
                    ending = self._record_result(run, spec, result_path, seconds=None, reused_from=reused.get(spec.name))
                    if lease.lost or ending is not JobState.RUNNING:
                        return ending
                continue
            stages_left = plan[plan.index(spec):]
            shortage = self._disk_shortage(job, stages_left, options)
            if shortage is not None and shortage.never_fits:
                return self._fail(job, spec.name, shortage.reason, self._never_fits_hint(job, stages_left, options))
            if shortage is not None:
                return self._wait_for_space(job, stages_left, options, f"waiting before {spec.name}: {shortage.reason}",
                                            shortage, "; the job starts when space is freed")
            self.space_waits.forget(job.id)
            ending = self._run_stage(run, spec)
            if lease.lost or ending is not JobState.RUNNING:
                return ending
        last = plan[-1].name
        self._store.transition(job.id, JobState.DONE, f"done after {last}", progress=100.0, stage=last,
                               from_states=RUNNING_ONLY)
        log.info("%s: done", job.set_name, extra=job_fields(job, last))
        self._on_change()
        return JobState.DONE

    def _disk_shortage(self, job: JobRecord, stages_left: Sequence[StageSpec],
                       options: Mapping[str, Any]) -> Shortage | None:
        need = self._estimate(job, stages_left, options)
        floor = self._floors.get(job.id)
        if floor is not None and floor[0] == stages_left[0].name:
            need = need.at_least(floor[1])  # more than the stage had when it filled the disk
        return self._disk.shortage(need)

    def _estimate(self, job: JobRecord, stages_left: Sequence[StageSpec], options: Mapping[str, Any]) -> DiskNeed:
        settings = self._settings
        size = measure_set(Path(job.source_path), settings.inbox, FileRules(settings.ignore_patterns))
        return estimate_writes([spec.name for spec in stages_left], size, self._max_gaussians(options),
                               settings.publish_levels)

    def _max_gaussians(self, options: Mapping[str, Any]) -> int:
        settings = self._settings
        on_cpu = training_backend(settings.train_backend) == "cpu"  # as the train stage will decide
        return int(options.get("max_gaussians") or (
            settings.train_cpu_max_gaussians if on_cpu else settings.train_max_gaussians))

    def _never_fits_hint(self, job: JobRecord, stages_left: Sequence[StageSpec], options: Mapping[str, Any]) -> str:
        """What to lower: the Gaussian cap when the Gaussians take most of the estimate, else the photos."""
        names = [spec.name for spec in stages_left]
        max_gaussians = self._max_gaussians(options)
        whole = self._estimate(job, stages_left, options)
        per_million = (estimate_writes(names, SetSize(0, 0), 2_000_000).state_bytes
                       - estimate_writes(names, SetSize(0, 0), 1_000_000).state_bytes)
        if 2 * per_million * max_gaussians / 1_000_000 >= whole.state_bytes:
            return (f"lower max_gaussians in job.toml (it is {max_gaussians:,}; each million Gaussians takes about "
                    f"{size_text(per_million)} in the state folder), or ask the server's operator for more disk space")
        return "send fewer or smaller photos, or ask the server's operator for more disk space"

    def _wait_for_space(self, job: JobRecord, stages_left: Sequence[StageSpec], options: Mapping[str, Any],
                        message: str, shortage: Shortage | None, journal_note: str = "") -> JobState:
        """Back to the queue, in its place, until space is freed; the worker looks again later
        (at once when ``shortage`` is None: the space is there already)."""
        stage = stages_left[0].name
        self._waiting[job.id] = (job, stages_left, options)
        self._store.transition(job.id, JobState.QUEUED, message, queued_at=job.queued_at, from_states=RUNNING_ONLY)
        if shortage is None or self.space_waits.short(job.id, stage, shortage):
            log.warning("%s: %s%s", job.set_name, message, journal_note, extra=job_fields(job, stage))
        self._on_change()
        return JobState.QUEUED

    def space_freed(self, job_id: str) -> bool:
        """Whether a job that waits for space would fit now (asks the disk, not the store)."""
        waiting = self._waiting.get(job_id)
        return waiting is None or self._disk_shortage(*waiting) is None

    def waiting_job_ids(self) -> list[str]:
        return list(self._waiting)

    def forget(self, job_id: str) -> None:
        """A job that waited for space left the queue some other way (cancelled, removed, run elsewhere)."""
        self._waiting.pop(job_id, None)
        self._floors.pop(job_id, None)
        self.space_waits.forget(job_id)

    def _run_stage(self, run: JobRun, spec: StageSpec) -> JobState:
        """The stage runs in this claim's folder (daemon/run/claim_folder.py): its inputs are the
        finished stages, linked in; its folder reaches the job's only while the claim holds."""
        job, plan, options, stage_records, claim, lease = (run.job, run.plan, run.options, run.stage_records,
                                                           run.claim, run.lease)
        folders = claim.folders
        finished = [earlier.name for earlier in plan if folders.result(earlier.name).exists()]
        stage_dir = claim.prepare(finished, spec.name, spec.resumable)
        claim.error(spec.name).unlink(missing_ok=True)  # a kept folder's: it would speak for this run
        context = StageContext(
            job_id=job.id,
            set_name=job.set_name,
            source=Path(job.source_path),
            inbox=self._settings.inbox,
            job_dir=claim.root,
            output_dir=stage_dir,
            options=options,
            settings=self._settings.stage_settings(),
        )
        context_path = claim.context(spec.name)
        atomic_write_json(context_path, context.to_json())

        started = datetime.now(timezone.utc)
        stage_records[spec.name] = StageRecord.started(started)
        progress = overall_progress(plan, stage_records, spec.name, 0.0)
        self._store.set_stage(job.id, spec.name, stage_records[spec.name], f"{spec.name}: starting", progress=progress)
        fields = job_fields(job, spec.name)
        log.info("%s: %s started", job.set_name, spec.name, extra=fields)
        self._on_change()

        progress_writer = ProgressWriter(self._store.raw, self._outage, job.id, spec.name, plan, stage_records, progress, self._on_change)

        with JobLog(folders.log) as job_log:

            def on_log_line(priority: int, text: str) -> None:
                lease.keep()  # the first line after a pause finds out whether the job is still ours
                if not lease.lost:  # else the job's log is another daemon's now
                    job_log.append(spec.name, text)
                log.log(level_for_priority(priority), "%s: %s", job.set_name, text, extra=fields)

            def on_tick() -> None:
                progress_writer.flush()
                lease.keep()

            outcome = run_child(
                [sys.executable, "-m", "stages.child", str(context_path), spec.entry],
                timeout_seconds=self._timeout(spec),
                grace_seconds=self._settings.cancel_grace_seconds,
                watch=ChildWatch(
                    on_progress=progress_writer.update,
                    on_log_line=on_log_line,
                    on_tick=on_tick,
                    should_cancel=lambda: self._cancel_requested(job.id),
                    should_stop=lambda: self._stop_requested.is_set() or lease.lost,
                ),
            )
        lease.confirm()  # the stage may have ended while this daemon was paused, and the job gone elsewhere
        if lease.lost:
            return JobState.RUNNING  # stopped: the job is not ours any more, nor its record
        seconds = round((datetime.now(timezone.utc) - started).total_seconds(), 3)
        return self._settle_outcome(run, spec, outcome, seconds)

    def _settle_outcome(self, run: JobRun, spec: StageSpec, outcome: ChildOutcome, seconds: float) -> JobState:
        job, stage_records, claim, name = run.job, run.stage_records, run.claim, spec.name
        if outcome.ending is Ending.FINISHED:
            return self._record_result(run, spec, claim.result(name), seconds)
        if outcome.ending in (Ending.FAILED, Ending.CRASHED):
            # before any write to the job store, which may live on the disk that is full
            filled = self._filled_disk(claim.error(name), outcome)
            if filled is not None:
                return self._wait_after_disk_filled(run, spec, seconds, *filled)
        ended_state = {Ending.CANCELLED: StageState.CANCELLED, Ending.INTERRUPTED: StageState.INTERRUPTED}.get(
            outcome.ending, StageState.FAILED)
        stage_records[name] = stage_records.get(name, NOT_STARTED).ended(ended_state, seconds)
        self._store.set_stage(job.id, name, stage_records[name], f"{name}: {ended_state}")

        if outcome.ending is Ending.INTERRUPTED:
            message = f"daemon stopping; the job resumes at {name} when it starts again"
            self._store.transition(job.id, JobState.QUEUED, message, queued_at=job.queued_at, from_states=RUNNING_ONLY)
            log.info("%s: %s", job.set_name, message, extra=job_fields(job, name))
            self._on_change()
            return JobState.QUEUED
        if outcome.ending is Ending.CANCELLED:
            reason = (self._store.get(job.id).cancel_reason or "cancelled")
            self._store.transition(job.id, JobState.CANCELLED, reason, from_states=RUNNING_ONLY)
            log.warning("%s: %s during %s", job.set_name, reason, name, extra=job_fields(job, name))
            self._on_change()
            return JobState.CANCELLED
        if outcome.ending is Ending.FAILED:
            failure = _read_json(claim.error(name)) or {}
            return self._fail(job, name, failure.get("message") or f"{name} failed", failure.get("hint"),
                              images=failure.get("images"), metrics=failure.get("metrics"))
        if outcome.ending is Ending.TIMED_OUT:
            limit = self._timeout(spec)
            log.warning("%s: %s ran past stage_timeouts.%s (%.0f s); raise it in the configuration if sets this "
                        "large are expected", job.set_name, name, name, limit, extra=job_fields(job, name))
            return self._fail(
                job,
                name,
                f"{name} did not finish within its time limit of {limit:.0f} s and was stopped",
                "send fewer or smaller photos (or a smaller max_image_size in job.toml), or ask the server's "
                "operator for a longer time limit",
            )
        message = f"the {name} stage {describe_exit(outcome.returncode)}"
        if outcome.returncode is not None and 0 < outcome.returncode < 128 and outcome.last_log_lines:
            message += f": {outcome.last_log_lines[-1].strip()}"
        out_of_memory = outcome.returncode in (-9, 137)
        hint = (
            "the machine ran out of memory: set a smaller max_image_size in job.toml, or send fewer photos"
            if out_of_memory
            # status.json is public: the state folder's path stays out of it
            else f"details in the journal (journalctl JOB_ID={job.id}) and in jobs/{job.id}/{JOB_LOG_FILE} in the state folder"
        )
        return self._fail(job, name, message, hint)

    def _filled_disk(self, error_path: Path, outcome: ChildOutcome) -> tuple[str, str] | None:
        """(which folder's disk, the words that tell it) when the stage died of a full disk: it says
        so (error.json, its last log lines), or it died without saying while the disk is full."""
        failure = _read_json(error_path) or {}
        said = " ".join([str(failure.get("message") or ""), str(failure.get("hint") or ""), *outcome.last_log_lines])
        words = disk_full_words(said)
        filled = self._disk.filled()
        if words is None and filled is None:
            return None
        where = filled[0] if filled is not None else "state folder"  # where stages write
        if words is None:
            words = f"it {describe_exit(outcome.returncode)} with {size_text(filled[1])} free"
        return where, words

    def _wait_after_disk_filled(self, run: JobRun, spec: StageSpec, seconds: float, where: str,
                                words: str) -> JobState:
        """Back to waiting for space, keeping the finished stages (and a resumable stage's
        checkpoints); the stage runs again only once it has twice the room it filled (twice what
        it had written, less what it keeps), or the estimate if that is more: it cannot loop."""
        job, plan, options, stage_records, name = run.job, run.plan, run.options, run.stage_records, spec.name
        stage_dir = run.claim.stage(name)
        written = disk_usage(stage_dir)
        kept = written if spec.resumable else 0
        if not spec.resumable:
            shutil.rmtree(stage_dir, ignore_errors=True)  # frees the space now; re-made on the next run anyway
        stages_left = plan[plan.index(spec):]
        estimate = self._estimate(job, stages_left, options)
        self._floors[job.id] = (name, DiskNeed(max(estimate.state_bytes, 2 * written - kept), estimate.outbox_bytes))
        stage_records[name] = stage_records.get(name, NOT_STARTED).ended(StageState.INTERRUPTED, seconds)
        self._store.set_stage(job.id, name, stage_records[name], f"{name}: interrupted, the disk is full")
        filled = f"the disk of the {where} filled up during {name} ({words})"
        shortage = self._disk_shortage(job, stages_left, options)
        if shortage is not None and shortage.never_fits:
            self._floors.pop(job.id, None)
            return self._fail(job, name, f"{filled}; to run again, {shortage.reason}",
                              "lower max_gaussians or max_image_size in job.toml, or ask the server's operator for "
                              "more disk space")
        if shortage is None:  # freed already (while the job store waited for its disk, say): the next claim runs it
            resumes = f"space has been freed since: the job resumes at {name}"
        else:
            resumes = f"the job resumes at {name} once {size_text(shortage.more)} more are free in the {shortage.where}"
        self.space_waits.forget(job.id)  # a new wait: the hold counts from now
        return self._wait_for_space(job, stages_left, options, f"{filled}; {resumes}", shortage)

    def _record_result(self, run: JobRun, spec: StageSpec, result_path: Path, seconds: float | None,
                       reused_from: str | None = None) -> JobState:
        """Record a finished stage (RUNNING: the job goes on): its folder and the files it hands to
        the outbox go into place while this claim holds (``JobStore.fenced``), then its record;
        FAILED when the outbox cannot be written. ``reused_from``: the earlier attempt whose result a
        retry took over (already in the job's folder)."""
        job, plan, stage_records, claim = run.job, run.plan, run.stage_records, run.claim
        result = StageResult.from_json(json.loads(result_path.read_text()))
        outbox_dir = claim.folders.outbox
        base = result_path.parent.parent  # the claim's folder, or the job's for a result already there
        staged: list[tuple[Path, Path]] = []
        try:
            for name in result.to_outbox:
                source = base / result.outputs[name]
                outbox_dir.mkdir(parents=True, exist_ok=True)
                remove_temporaries(outbox_dir / source.name)  # of a copy cut short by a crash
                staged.append((claim.stage_outbox_copy(source, outbox_dir / source.name), outbox_dir / source.name))
            promoted = self._store.fenced(job.id, claim.epoch, lambda: claim.promote(spec.name, staged))
        except OSError as error:
            log.error("%s: %s: cannot write %s into the outbox (%s): check that the outbox folder is writable by "
                      "the daemon's user and has free space", job.set_name, spec.name, error.filename, error.strerror,
                      extra=job_fields(job, spec.name))
            stage_records[spec.name] = stage_records.get(spec.name, NOT_STARTED).ended(StageState.FAILED, seconds)
            self._store.set_stage(job.id, spec.name, stage_records[spec.name], f"{spec.name}: failed")
            return self._fail(job, spec.name, f"{spec.name}: its results could not be published ({error.strerror})",
                              ASK_THE_OPERATOR)
        if not promoted:
            for copy, _ in staged:
                copy.unlink(missing_ok=True)
            run.lease.lost = True
            log.warning("%s: job %s was taken over by another daemon while this one was paused past its lease; "
                        "this daemon's %s result stays unused in %s and nothing of the new owner's is changed",
                        job.set_name, job.id, spec.name, claim.root, extra=job_fields(job, spec.name))
            return JobState.RUNNING
        current = self._store.get(job.id)
        stage_records[spec.name] = stage_records.get(spec.name, NOT_STARTED).ended(StageState.DONE, seconds,
                                                                                    reused_from=reused_from)
        fields: dict[str, Any] = {
            "metrics": {**current.metrics, spec.name: dict(result.metrics)},
            "outputs": {**current.outputs, **{f"{spec.name}.{key}": path for key, path in result.outputs.items()}},
            "warnings": list(dict.fromkeys([*current.warnings, *result.warnings])),
            "progress": overall_progress(plan, stage_records, spec.name, 100.0),
        }
        if result.images is not None:
            fields["images"] = dict(result.images)
        self._store.set_stage(job.id, spec.name, stage_records[spec.name], f"{spec.name}: done", **fields)
        if reused_from is not None:
            log.info("%s: %s reused from %s", job.set_name, spec.name, reused_from, extra=job_fields(job, spec.name))
        else:
            log.info("%s: %s done in %s s", job.set_name, spec.name, seconds, extra=job_fields(job, spec.name))
        self._on_change()
        return JobState.RUNNING

    def _take_over_earlier_stages(self, run: JobRun) -> dict[str, str]:
        """A retry's first run: link in the earlier attempt's stages that it may reuse
        (daemon/jobs/reuse.py); say why where it starts earlier than asked. The stages taken over,
        each with the attempt it came from."""
        job, plan, options, folders = run.job, run.plan, run.options, run.folders
        request = job.retry_request
        earlier = self._store.get(request.earlier_job)
        earlier_folders = None if earlier is None else JobFolders.of(self._settings, earlier)
        self._store.update_fields(job.id, owner_only=True,
                                  message=f"checking which stages of {request.earlier_job} can be reused")
        self._on_change()
        rules = FileRules(self._settings.ignore_patterns)
        reuse = plan_reuse(self._pipeline, request, earlier, earlier_folders, options,
                           lambda: set_digests(Path(job.source_path), self._settings.inbox, rules))
        planned = {spec.name for spec in plan}
        stages = [name for name in reuse.stages if name in planned]
        why_not = reuse.why_not
        if stages:
            try:
                take_over(earlier_folders, folders, stages)
            except OSError as error:
                log.warning("%s: could not link the stages of %s into %s: %s", job.set_name, reuse.earlier_job,
                            folders.work, error, extra=job_fields(job))
                for name in stages:
                    shutil.rmtree(folders.stage(name), ignore_errors=True)
                stages, why_not = [], f"the earlier stages could not be taken over ({error.strerror})"
        if stages:
            log.info("%s: retry of %s: reusing its %s; starting from %s", job.set_name, reuse.earlier_job,
                     ", ".join(stages), _next_stage(plan, stages), extra=job_fields(job))
        if why_not is not None:
            start = f"from {_next_stage(plan, stages)}" if stages else "from the beginning"
            note = f"this retry starts {start}, not from {reuse.asked_from}: {why_not}"
            log.warning("%s: %s", job.set_name, note, extra=job_fields(job))
            self._store.update_fields(job.id, owner_only=True,
                                      warnings=list(dict.fromkeys([*self._store.get(job.id).warnings, note])))
        return {name: reuse.earlier_job for name in stages}

    def _fail(self, job: JobRecord, stage: str, message: str, hint: str | None, images: Any = None,
              metrics: Mapping[str, Any] | None = None) -> JobState:
        fields: dict[str, Any] = {"error": JobError(stage, message, hint), "stage": stage}
        if images is not None:
            fields["images"] = images
        if metrics is not None:  # what the failed stage found: which photos, and why
            fields["metrics"] = {**self._store.get(job.id).metrics, stage: dict(metrics)}
        self._store.transition(job.id, JobState.FAILED, message, from_states=RUNNING_ONLY, **fields)
        log.error("%s: %s failed: %s", job.set_name, stage, message, extra=job_fields(job, stage))
        self._on_change()
        return JobState.FAILED

    def _timeout(self, spec: StageSpec) -> float:
        """The configured limit; a pipeline's own stage that the settings do not know (a test's) keeps its own."""
        return self._settings.stage_timeouts.get(spec.name, spec.default_timeout_seconds)

    def _cancel_requested(self, job_id: str) -> bool:
        try:
            current = self._store.raw.get(job_id)
        except Exception as error:
            if not is_outage(error):
                raise
            self._outage.failed(error, "checking for a cancel request")
            return False  # asked again at the next poll
        return current is None or current.cancel_requested


def _next_stage(plan: Sequence[StageSpec], done: Sequence[str]) -> str:
    """The first planned stage not in ``done`` (the last one when all are)."""
    return next((spec.name for spec in plan if spec.name not in done), plan[-1].name)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
