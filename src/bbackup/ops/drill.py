"""Restore drills: prove that a sample of a snapshot restores. The sample (`drill_sample`)
is restored by the Restorer into a scratch directory, in batches of bounded size, every
restored byte is read back and checked against the snapshot's blob IDs (`--verify`), and
with `compare_source` the live files whose size and mtime are unchanged since the snapshot
are compared with it too. The scratch directory is removed afterwards whatever happens.
The packs proven are recorded in the repository (`drill_record`) for every host's next
drill and for `status`.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from bbackup.crypto.aead import BlobType
from bbackup.errors import BbackupError, IntegrityError
from bbackup.ops.drill_record import (
    DrillRecord,
    coverage_of,
    data_pack_sizes,
    load_drill_records,
    save_drill_record,
)
from bbackup.ops.drill_report import DrillProgress, DrillReport, describe
from bbackup.ops.drill_sample import SampledPaths, SampleFile, choose_sample, sample_fraction
from bbackup.ops.drill_scratch import prepare_scratch_root, scratch_directory
from bbackup.ops.restore import Restorer
from bbackup.ops.restore_compare import RestoreSource, blob_layout, mismatched_blobs
from bbackup.ops.restore_reads import MAX_RANGE_GAP
from bbackup.ops.restore_select import PathFilter, select_entries
from bbackup.repository import DocumentStore, pack_object_name
from bbackup.snapshot.model import Node, Snapshot

#: Plaintext bytes restored into the scratch directory at once: a 5 % sample of a large
#: snapshot is restored in batches, each removed before the next, so a drill never needs
#: more free space than this (plus its largest file).
BATCH_BYTES = 1024 * 1024 * 1024
#: The sample when neither a percentage nor a number of files is given.
DEFAULT_SAMPLE = "5%"


class DrillSource(RestoreSource, DocumentStore, Protocol):
    """What a drill reads and records: blobs and trees, and drill records."""


@dataclass(frozen=True, slots=True)
class DrillOptions:
    """What to sample and how to restore it. `fraction`/`files`: the sample (see
    `choose_sample`); `scratch_root`: where the scratch directory is made."""

    fraction: float | None = None
    files: int | None = None
    compare_source: bool = False
    scratch_root: str | None = None
    workers: int = 2
    connections: int = 4
    read_size: int | None = None
    max_gap: int = MAX_RANGE_GAP
    batch_bytes: int = BATCH_BYTES


class Drill:
    """One drill of one snapshot: `plan` chooses the sample (reading only trees, the index
    and drill records), `run` restores, verifies, compares and records it."""

    def __init__(
        self,
        repo: DrillSource,
        snapshot: Snapshot,
        options: DrillOptions,
        *,
        rng: random.Random | None = None,
        on_warning: Callable[[str], None] | None = None,
    ) -> None:
        self.repo = repo
        self.snapshot = snapshot
        self.options = options
        self.rng = rng or random.Random()
        self.on_warning = on_warning or (lambda _line: None)
        self.report = DrillReport(snapshot.id)
        self.progress = DrillProgress()
        self.sample: list[SampleFile] = []
        self._nodes: dict[bytes, Node] = {}
        self._records: dict[str, DrillRecord] = {}
        self._data_packs: dict[str, int] = {}
        self._restorer: Restorer | None = None
        self._started = time.monotonic()

    @property
    def packs_needed(self) -> set[str]:
        """The object names of the data packs the sample reads (for a thaw)."""
        return {pack_object_name_of(p) for f in self.sample for p in f.packs}

    def sample_progress(self) -> dict[str, Any]:
        p, restorer = self.progress, self._restorer
        current = restorer.progress.bytes_written if restorer is not None else 0
        return {
            "files": p.files + (restorer.summary.files if restorer is not None else 0),
            "bytes": p.bytes + current,
            "bytes_total": p.bytes_total,
            "seconds": time.monotonic() - p.started,
        }

    async def plan(self) -> list[SampleFile]:
        """Walk the snapshot, read the drill records and choose the sample."""
        selection = await select_entries(self.repo, self.snapshot, PathFilter())
        for tree in selection.damaged_trees:
            self._fail(tree.path, f"its listing cannot be read ({tree.message})", "tree")
        files: list[SampleFile] = []
        index = self.repo.index
        for directory, entry in selection.root.files():
            if entry.content:
                path = directory.rel + b"/" + entry.name
                packs = frozenset(index.lookup(b).pack_id for b in entry.content if index.has(b))
                self._nodes[path] = entry
                files.append(SampleFile(path, entry.size, packs))
        files.sort(key=lambda f: f.path)  # the walk's order must not bias the choice
        self._records = await load_drill_records(self.repo)
        self._data_packs = data_pack_sizes(index)
        proven = coverage_of(self._records, self._data_packs).proven
        options = self.options
        fraction = options.fraction
        if fraction is None and options.files is None:
            fraction = sample_fraction(DEFAULT_SAMPLE)
        self.sample = choose_sample(
            files, proven, fraction=fraction, count=options.files, rng=self.rng
        )
        self.progress.bytes_total = sum(f.size for f in self.sample)
        return self.sample

    async def run(self) -> DrillReport:
        """Restore and verify the sample chosen by `plan`, compare it with the live files if
        asked, record what was proven; the report says what failed."""
        report = self.report
        report.files = len(self.sample)
        report.bytes = self.progress.bytes_total
        failed: set[bytes] = set()
        lost_packs: set[str] = set()
        root = Path(self.options.scratch_root or tempfile.gettempdir())
        await asyncio.to_thread(prepare_scratch_root, root)
        for batch in batches(self.sample, self.options.batch_bytes):
            with scratch_directory(root) as scratch:
                await self._restore_batch(batch, scratch, failed, lost_packs)
        if self.options.compare_source:
            here = socket.gethostname()
            if self.snapshot.host != here:
                self.on_warning(
                    f"warning: the snapshot is of host {self.snapshot.host!r}: comparing with "
                    f"the files at the same paths on this one ({here!r})"
                )
            await asyncio.to_thread(self._compare_source)
        read = {p for f in self.sample for p in f.packs}
        proven = read - lost_packs - {p for f in self.sample if f.path in failed for p in f.packs}
        report.packs_read, report.packs_proven = len(read), len(proven)
        report.ok = not report.failures
        now = time.time()
        record = DrillRecord(
            {p: now for p in proven},
            time=now,
            snapshot_id=self.snapshot.id,
            ok=report.ok,
            files=report.files,
            bytes_verified=report.verified_bytes,
            failed=tuple(f["path"] for f in report.failures),
        )
        try:
            report.record = await save_drill_record(
                self.repo, record, self._records, self._data_packs
            )
        except (BbackupError, OSError) as exc:
            report.record_error = f"could not record the drill in the repository: {exc}"
            self.on_warning(f"warning: {report.record_error}")
        # What the stored record adds, whether or not it merged the others into itself.
        coverage = coverage_of({**self._records, "": record}, self._data_packs)
        report.coverage = coverage.to_dict()
        report.duration_seconds = round(time.monotonic() - self._started, 3)
        report.message = describe(report, coverage)
        return report

    def _fail(self, path: str, problem: str, kind: str) -> None:
        self.report.failures.append({"path": path, "problem": problem, "kind": kind})

    async def _restore_batch(
        self, batch: list[SampleFile], scratch: Path, failed: set[bytes], lost_packs: set[str]
    ) -> None:
        options = self.options
        restorer = Restorer(
            self.repo,
            self.snapshot,
            str(scratch),
            path_filter=SampledPaths(f.path for f in batch),
            verify=True,
            workers=options.workers,
            connections=options.connections,
            read_size=options.read_size,
            max_gap=options.max_gap,
        )
        self._restorer = restorer
        try:
            summary = await restorer.run()
        finally:
            self._restorer = None
        prefix = os.fsdecode(restorer.target)

        def snapshot_path(restored: str) -> str:
            return restored.removeprefix(prefix) or "/"

        for damaged in summary.damaged:
            path = snapshot_path(damaged["path"])
            failed.add(os.fsencode(path))
            blobs = damaged["blobs"]
            named = ", ".join(f"{b['pack'] or 'index'}: {b['problem']}" for b in blobs[:3])
            more = f" and {len(blobs) - 3} more" if len(blobs) > 3 else ""
            self._fail(path, f"lost {len(blobs)} blob(s) ({named}{more})", "restore")
            lost_packs.update(b["pack"].rsplit("/", 1)[-1] for b in blobs if b["pack"])
        for failure in summary.verify_failures:
            path = snapshot_path(failure["path"])
            failed.add(os.fsencode(path))
            self._fail(path, failure["message"], "verify")
        for error in summary.error_list:
            path = snapshot_path(error["path"])
            failed.add(os.fsencode(path))
            self._fail(path, error["message"], "restore")
        self.report.verified_files += summary.verified_files
        self.report.verified_bytes += summary.verified_bytes
        self.progress.files += summary.files
        self.progress.bytes += summary.bytes

    def _compare_source(self) -> None:
        """Compare each sampled file with the live file at its path, where that file's size
        and mtime are still the snapshot's: its content should be too (a difference is bit
        rot on the source, or a backup that stored the wrong bytes)."""
        for file in self.sample:
            node = self._nodes[file.path]
            try:
                st = os.lstat(file.path)
            except OSError:
                self.report.source_skipped += 1
                continue
            if (
                not stat.S_ISREG(st.st_mode)
                or st.st_size != node.size
                or st.st_mtime_ns != node.mtime_ns
            ):
                self.report.source_skipped += 1  # changed since the snapshot, as it may
                continue
            path = os.fsdecode(file.path)
            try:
                layout = blob_layout(self.repo.index.lookup, node)
                fd = os.open(file.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
                try:
                    mismatched, _ = mismatched_blobs(fd, layout, self.repo.blob_id)
                finally:
                    os.close(fd)
            except (OSError, IntegrityError) as exc:
                self.report.source_skipped += 1
                self.on_warning(f"warning: {path}: cannot compare with the source: {exc}")
                continue
            self.report.source_compared += 1
            if mismatched:
                self._fail(
                    path,
                    f"the live file differs from the snapshot at {len(mismatched)} place(s) "
                    "though its size and mtime are unchanged",
                    "source",
                )


def pack_object_name_of(pack_id: str) -> str:
    """A data pack's object name (drills read data packs only)."""
    return pack_object_name(BlobType.DATA, pack_id)


def batches(sample: list[SampleFile], limit: int) -> Iterator[list[SampleFile]]:
    """The sample in batches of at most `limit` bytes (a larger file alone)."""
    batch: list[SampleFile] = []
    size = 0
    for file in sample:
        if batch and size + file.size > limit:
            yield batch
            batch, size = [], 0
        batch.append(file)
        size += file.size
    if batch:
        yield batch
