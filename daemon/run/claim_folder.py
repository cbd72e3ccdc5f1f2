"""The folder one claim of a job works in, and how its finished stages reach the job's folder.

Several daemons share the state folder and the outbox. One that was paused past its lease (a
stopped VM, a hung NFS mount, a long GC pause) can wake up after another daemon took its job
over, its stage still running. So each claim of a job works in ``claims/<epoch>/`` of the job's
work folder, laid out as the job's folder is: each finished stage appears there as a link to the
job's own stage folder (``sfm -> ../../sfm``), so that a stage reads its inputs and names its
outputs as ever; the stage being run is a real folder. Once it finishes, its folder is renamed
into the job's folder, and the files it hands to the outbox, copied beside their places under
names of this claim, are renamed into place, all inside ``JobStore.fenced``: only while this
daemon still holds this claim, with the job's row locked so that a takeover waits until the
renames are done. A daemon that lost its claim leaves its work where no one reads it.

A resumable stage (training, with its checkpoints) starts from a hard-linked copy of the latest
earlier claim's folder of it: no second copy of checkpoints on a disk that may just have filled
up, and a consistent one, since a resumable stage writes its files by rename (stages/base.py), so
that an earlier claim's process still writing there replaces its own links, never the new claim's.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Sequence

from daemon.jobs.folders import JobFolders, link_tree
from stages.atomic_files import atomic_copy
from stages.base import ERROR_FILE, RESULT_FILE


class ClaimFolder:
    def __init__(self, folders: JobFolders, epoch: int):
        self.folders = folders
        self.epoch = epoch
        self.root = folders.claim(epoch)

    def stage(self, name: str) -> Path:
        return self.root / name

    def context(self, name: str) -> Path:
        return self.root / f"{name}.context.json"

    def result(self, name: str) -> Path:
        return self.stage(name) / RESULT_FILE

    def error(self, name: str) -> Path:
        return self.stage(name) / ERROR_FILE

    def prepare(self, finished: Sequence[str], name: str, resumable: bool) -> Path:
        """The claim's folder with links to the ``finished`` stages, and an empty folder for stage
        ``name`` (a resumable one's: what the latest earlier claim left of it)."""
        self.root.mkdir(parents=True, exist_ok=True)
        for done in finished:
            self._link_finished(done)
        stage_dir = self.stage(name)
        if stage_dir.is_symlink() or (stage_dir.exists() and not resumable):
            _remove(stage_dir)  # a partial run of this claim, from before the daemon restarted
        if not stage_dir.exists() and resumable and (earlier := self._latest_earlier(name)) is not None:
            link_tree(earlier, stage_dir)
        stage_dir.mkdir(parents=True, exist_ok=True)
        return stage_dir

    def promote(self, name: str, outbox_copies: Sequence[tuple[Path, Path]]) -> None:
        """Move the finished stage into the job's folder and its outbox files into place; run
        inside ``JobStore.fenced``, and again should the store's answer be lost (idempotent)."""
        source, target = self.stage(name), self.folders.stage(name)
        if not source.is_symlink() and source.is_dir():
            if target.exists() or target.is_symlink():
                aside = self.root / f"{name}.replaced"  # an unfinished folder from before claims existed
                _remove(aside)
                os.rename(target, aside)
            os.rename(source, target)
        for staged, destination in outbox_copies:
            if staged.exists():
                os.rename(staged, destination)
        self._link_finished(name)

    def stage_outbox_copy(self, source: Path, destination: Path) -> Path:
        """A whole copy of ``source`` beside ``destination``, under a name of this claim, for
        ``promote`` to rename into place."""
        staged = destination.with_name(f".{destination.name}.claim-{self.epoch}")
        atomic_copy(source, staged)
        return staged

    def _link_finished(self, name: str) -> None:
        link = self.stage(name)
        if link.is_symlink():
            return
        self.root.mkdir(parents=True, exist_ok=True)
        if link.exists():
            _remove(link)
        link.symlink_to(Path("..") / ".." / name, target_is_directory=True)

    def _latest_earlier(self, name: str) -> Path | None:
        """The stage's folder of the newest earlier claim, or one left in the job's folder by a
        version before claims (with no result: a finished one would not be run again)."""
        epochs = sorted((int(entry.name) for entry in self.folders.claims.iterdir() if entry.name.isdigit()
                         and int(entry.name) < self.epoch), reverse=True) if self.folders.claims.is_dir() else []
        for epoch in epochs:
            candidate = self.folders.claim(epoch) / name
            if candidate.is_dir() and not candidate.is_symlink():
                return candidate
        legacy = self.folders.stage(name)
        return legacy if legacy.is_dir() and not legacy.is_symlink() else None

    def remove_other_claims(self) -> None:
        """Once the job has ended here: the folders of earlier claims (a paused daemon's leftovers)
        and this claim's links; a failed stage's folder stays, for whoever looks into why."""
        for entry in self.folders.claims.iterdir() if self.folders.claims.is_dir() else ():
            if entry != self.root:
                _remove(entry)
        for entry in self.root.iterdir() if self.root.is_dir() else ():
            if entry.is_symlink() or entry.name.endswith((".context.json", ".replaced")):
                _remove(entry)


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.exists():
        shutil.rmtree(path, ignore_errors=True)
