"""The archiver: walks the source paths and writes one snapshot.

scan (os.scandir + lstat) → change detection against the parent snapshot
(backup_changes) → read → chunk → hash → dedup → compress → seal into the pack → hash the
pack (chunk_pipeline, on reader threads; every library involved releases the GIL) →
upload (asyncio tasks). The tree walk (backup_tree) hands changed files to the readers in
batches (backup_batching). The writer bounds the packs in memory, so a slow store slows
the readers instead of filling memory.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from bbackup import __version__
from bbackup.errors import BbackupError
from bbackup.ops.adopt import adopt_packs
from bbackup.ops.backup_batching import FileBatcher
from bbackup.ops.backup_changes import select_parent
from bbackup.ops.backup_summary import BackupProgress, BackupSummary
from bbackup.ops.backup_tree import TreeWalker, virtual_tree
from bbackup.ops.chunk_pipeline import ChunkPipeline
from bbackup.ops.excludes import Excluder
from bbackup.ops.scan import Prescan
from bbackup.ops.seal_processes import SealWorkers
from bbackup.ops.worker_processes import worker_count
from bbackup.repository import Repository, RepositoryLock, current_user, pack_object_name
from bbackup.snapshot.model import Snapshot
from bbackup.snapshot.store import load_snapshots, save_snapshot

__all__ = [
    "BACKUP_TYPES",
    "Archiver",
    "BackupOptions",
    "BackupProgress",
    "BackupSummary",
    "normalize_paths",
]

T = TypeVar("T")
BACKUP_TYPES = ("incremental", "differential", "full")


@dataclass(slots=True)
class BackupOptions:
    """What to back up and how."""

    paths: Sequence[str]
    host: str = field(default_factory=socket.gethostname)
    tags: Sequence[str] = ()
    excludes: Sequence[str] = ()
    backup_type: str = "incremental"
    time: datetime | None = None
    storage_class: str | None = None
    compression_level: int | None = None
    workers: int = 2
    upload_slots: int = 4
    #: Directories listed ahead, while the repository was being opened (stopped by run).
    prescan: Prescan | None = None
    #: The storage requests made so far, recorded in the snapshot's summary (`stats --cost`).
    request_counts: Callable[[], dict[str, int]] | None = None


def normalize_paths(paths: Sequence[str]) -> list[str]:
    """Absolute, de-duplicated source paths; a path inside another is dropped."""
    absolute = sorted({os.path.abspath(os.path.expanduser(p)) for p in paths})
    kept: list[str] = []
    for path in absolute:
        if not any(path == k or path.startswith(k.rstrip("/") + "/") for k in kept):
            kept.append(path)
    return kept


class Archiver:
    """Backs up a set of paths into one snapshot."""

    def __init__(
        self,
        repo: Repository,
        options: BackupOptions,
        *,
        on_error: Callable[[str, str], None] | None = None,
        on_warning: Callable[[str], None] | None = None,
    ) -> None:
        if options.backup_type not in BACKUP_TYPES:
            raise BbackupError(f"unknown backup type {options.backup_type!r}")
        self.repo = repo
        self.options = options
        self.on_error = on_error
        self.on_warning = on_warning
        self.progress = BackupProgress()
        self.summary = BackupSummary(type=options.backup_type)
        self.excluder = Excluder(options.excludes)
        self._tasks: set[asyncio.Task[Any]] = set()

    async def run(self) -> Snapshot:
        started = time.monotonic()
        paths = normalize_paths(self.options.paths)
        missing = [p for p in paths if not await asyncio.to_thread(os.path.lexists, p)]
        if missing:
            raise BbackupError(f"{missing[0]}: no such file or directory")
        async with RepositoryLock(self.repo, exclusive=False, purpose="backup") as lock:
            # Read the index and the snapshots only once our lock is visible: a prune that
            # cannot see the lock yet may delete any pack no snapshot uses, so nothing
            # read before it may be deduplicated against or reused from a parent. The
            # pack listing (one LIST per 1000 packs) and the snapshots run beside the
            # index load, so an unchanged backup waits for none of them in turn: on S3
            # each is a round trip or two (docs/bench/history.md, "Adoption").
            stored, _, snapshots = await asyncio.gather(
                self.repo.list_packs(("data/",)), self.repo.load_index(), load_snapshots(self.repo)
            )
            adoption = await adopt_packs(
                self.repo, stored, lock.seen_locks, on_warning=self._warning, trees_listed=False
            )
            self.summary.packs_adopted = adoption.packs
            self._warn_recorded_damage()
            self.summary.bytes_adopted = adoption.bytes
            parent = select_parent(snapshots, self.options.host, paths, self.options.backup_type)
            # A full backup trusts nothing from the latest snapshot but compares with it,
            # so that its files are reported new, changed or unmodified, not all new.
            compared = parent or select_parent(snapshots, self.options.host, paths, "incremental")
            fulls = [
                s for s in snapshots if s.backup_type == "full" and s.host == self.options.host
            ]
            base = max(fulls, key=lambda s: (s.time, s.id), default=None)
            self.summary.parent = parent.id if parent else None
            writer = self.repo.new_writer(
                compression_level=self.options.compression_level,
                data_storage_class=self.options.storage_class,
                upload_slots=self.options.upload_slots,
            )
            if self.options.prescan is not None:
                await asyncio.to_thread(self.options.prescan.stop)
            workers = self.options.workers
            pool = ThreadPoolExecutor(workers, thread_name_prefix="bb-read")
            cpu_pool = ThreadPoolExecutor(workers, thread_name_prefix="bb-cpu")
            loop = asyncio.get_running_loop()
            sealer_count = worker_count(workers)
            sealers = None
            if sealer_count:
                sealers = SealWorkers(
                    self.repo.master,
                    compression_level=writer.compression_level,
                    limit=self.repo.config.chunker.min_size,
                    count=sealer_count,
                )
            pipeline = ChunkPipeline(
                writer,
                self.repo.master.chunker_seed,
                self.repo.config.chunker,
                self.progress,
                cpu_pool=cpu_pool,
                workers=workers,
                sealers=sealers,
                on_warning=lambda line: loop.call_soon_threadsafe(self._warning, line),
            )
            batcher = FileBatcher(
                pipeline.read_files,
                loop=loop,
                pool=pool,
                batches_in_flight=max(2, workers * 4),
                tiny_readers=max(1, sealer_count),
                summary=self.summary,
                report_error=self._error,
                spawn=self._task,
            )
            walker = TreeWalker(
                self.repo,
                writer,
                batcher,
                full=self.options.backup_type == "full",
                excluder=self.excluder,
                prescan=self.options.prescan,
                summary=self.summary,
                progress=self.progress,
                report_error=self._error,
                spawn=self._task,
            )
            try:
                with walker.collection:
                    tree_id = await walker.save_virtual(
                        b"", virtual_tree(paths), compared.tree if compared else None
                    )
                await writer.flush()
            except BaseException:
                for task in list(self._tasks):
                    task.cancel()
                if self._tasks:
                    await asyncio.wait(set(self._tasks))
                await writer.abort()
                raise
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
                cpu_pool.shutdown(wait=True, cancel_futures=True)
                if sealers is not None:
                    sealers.close()
            stats = writer.stats
            self.summary.bytes_added = stats.bytes_added
            self.summary.bytes_stored = stats.bytes_stored
            self.summary.packs_written = stats.packs
            self.summary.bytes_read = self.progress.bytes_read
            self.summary.errors = len(self.summary.error_list)
            self.summary.duration_seconds = round(time.monotonic() - started, 3)
            snapshot = Snapshot(
                time=self.options.time or datetime.now().astimezone(),
                host=self.options.host,
                paths=paths,
                tree=tree_id,
                user=current_user(),
                tags=sorted(set(self.options.tags)),
                backup_type=self.options.backup_type,
                parent=parent.id if parent else None,
                base=None if self.options.backup_type == "full" else (base.id if base else None),
                program_version=f"bbackup {__version__}",
                excludes=list(self.options.excludes),
                summary=self._stored_summary(),
            )
            await save_snapshot(self.repo, snapshot)
        self.summary.snapshot_id = snapshot.id
        return snapshot

    def _stored_summary(self) -> dict[str, Any]:
        summary = self.summary.to_dict()
        for transient in ("snapshot_id", "requests", "error_list"):
            summary.pop(transient, None)
        if self.options.request_counts is not None:
            requests = dict(self.options.request_counts())
            requests["PUT"] = requests.get("PUT", 0) + 1  # the snapshot document itself
            summary["requests"] = requests
        if self.options.storage_class:
            summary["storage_class"] = self.options.storage_class
        return summary

    def _error(self, path: bytes, message: str) -> None:
        text = os.fsdecode(path)
        self.summary.error_list.append({"path": text, "message": message})
        self.progress.errors += 1
        if self.on_error is not None:
            self.on_error(text, message)

    def _warn_recorded_damage(self) -> None:
        """Say once that damage records are in force (load_index applied them: no blob
        they name is deduplicated against, so a file that uses one is uploaded again)."""
        packs = self.repo.index.all_packs()
        damaged = sorted(p for p in self.repo.index.damaged if p in packs)
        if damaged:
            names = ", ".join(pack_object_name(packs[p].blob_type, p) for p in damaged[:3])
            self._warning(
                f"{len(damaged)} pack{'s are' if len(damaged) > 1 else ' is'} recorded as "
                f"damaged ({names}"
                f"{' …' if len(damaged) > 3 else ''}): their damaged blobs are uploaded "
                "again; run `bbackup repair packs`"
            )

    def _warning(self, line: str) -> None:
        if self.on_warning is not None:
            self.on_warning(line)

    def _task(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """A task that is cancelled if the backup fails before it is awaited."""
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        # Marked as seen: whoever awaits the task still gets its exception, and once the
        # backup fails (on that error or another), nobody may: asyncio would log it then.
        if not task.cancelled():
            task.exception()
