"""The restorer: rebuilds a snapshot's files, links and metadata under a target directory.

Select first (`restore_select`: walk the trees through the patterns; without patterns
each directory's listing is read only when the plan comes to it), then plan
(`restore_plan`: decide per path what `--overwrite` does with what is there, make
directories and special files, remove what `--delete` removes), then read the blobs each
pack holds for the snapshot with a few ranged reads (`restore_reads`, `restore_fetch`),
decrypt and verify them in worker threads and write each to every place it belongs
(`restore_files`: a file gets its metadata as its last blob lands). The plan goes window by
window (`restore_plan`), each window's reads running while the next is planned, so a
restore holds two windows' plan, not the snapshot's. Directories get their metadata last,
each after everything in it, so nothing written afterwards disturbs their times
(`restore_finish`, which also makes the hard links and runs --verify). Everything is
reached from the target's descriptor without following a symlink (`restore_target`), so
the restore never writes outside its target.

A blob that cannot be read (its pack missing or damaged) costs only the files that need it:
they are kept as `NAME.bbackup-partial` and listed in the summary with the blobs they lack.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from bbackup.crypto.aead import CipherKeys
from bbackup.errors import IntegrityError, NotFound
from bbackup.ops.restore_compare import Overwrite, RestoreSource
from bbackup.ops.restore_fetch import PlanWindow, WindowFetcher
from bbackup.ops.restore_files import FileWriter, RestoredFile
from bbackup.ops.restore_finish import RestoreFinisher
from bbackup.ops.restore_gc import PlanCollection
from bbackup.ops.restore_metadata import restore_owners
from bbackup.ops.restore_plan import PlanWindows, RestorePlanner
from bbackup.ops.restore_processes import Delegation, RestoreWorkers
from bbackup.ops.restore_reads import MAX_BYTES_IN_FLIGHT, MAX_RANGE_GAP, NeededBlob, PackRead
from bbackup.ops.restore_report import RestoreProgress, RestoreSummary
from bbackup.ops.restore_select import PathFilter, SelectedDir, Selection, select_entries
from bbackup.ops.restore_target import OpenDirectories
from bbackup.ops.worker_processes import worker_count
from bbackup.snapshot.model import Snapshot

#: Write workers a restore starts (`restore_processes`), up to the cores it may use: more
#: than the threads of --workers, which cannot share the interpreter lock.
WRITE_WORKERS = 2
#: A path's action, for --dry-run listings: (path, "write" | "delete" | ...).
PlanListener = Callable[[str, str], None]


def close_walk(windows: PlanWindows) -> None:
    """Stop the plan's walk, releasing the directories it holds open; a walk still running
    in its thread (the restore was cancelled meanwhile) cannot be stopped and ends with it."""
    with contextlib.suppress(ValueError):
        windows.close()


class Restorer(WindowFetcher, RestoreFinisher):
    """Restores one snapshot (or the part of it the patterns select) into a target."""

    def __init__(
        self,
        repo: RestoreSource,
        snapshot: Snapshot,
        target: str,
        *,
        include: Sequence[str] | None = None,
        exclude: Sequence[str] | None = None,
        path_filter: PathFilter | None = None,
        overwrite: Overwrite = Overwrite.IF_CHANGED,
        dry_run: bool = False,
        delete: bool = False,
        verify: bool = False,
        workers: int = 2,
        connections: int = 4,
        read_size: int | None = None,
        max_gap: int = MAX_RANGE_GAP,
        on_error: Callable[[str, str], None] | None = None,
        on_warning: Callable[[str, str], None] | None = None,
        on_plan: PlanListener | None = None,
        numeric_owner: bool = False,
        worker_keys: CipherKeys | None = None,
    ) -> None:
        """`read_size`: split reads of a pack so none spans more than this many bytes
        (None: one read per run of needed blobs; right where requests cost money).
        `max_gap`: unneeded bytes between needed blobs that one read spans. The patterns
        are checked here: an invalid one is a UsageError before anything is read.
        `numeric_owner`: owners by their recorded numbers, not by name (run as root).
        `path_filter`, instead of the patterns: a selection of the caller's (a drill's
        sample of exact paths). `worker_keys`: the repository's keys, for write workers
        (`restore_processes`) that make files of one blob on other cores; None: none."""
        self.repo = repo
        self.snapshot = snapshot
        self.target = os.fsencode(os.path.abspath(target))
        self.path_filter = path_filter or PathFilter(include or (), exclude or ())
        self.overwrite = overwrite
        self.dry_run = dry_run
        self.delete = delete
        self.verify = verify
        self.workers = workers
        self.connections = max(1, connections)
        self.read_size = read_size
        self.max_gap = max_gap
        self.on_error = on_error
        self.on_warning = on_warning
        self.progress = RestoreProgress()
        self.summary = RestoreSummary(snapshot_id=snapshot.id, dry_run=dry_run)
        #: Blobs that could not be read: ID → (pack or "", what is wrong).
        self._lost: dict[bytes, tuple[str, str]] = {}
        #: Blobs whose pack the last window's last files need, read with the next window.
        self._carried: dict[bytes, NeededBlob] = {}
        #: Files that lost blobs (the summary lists them).
        self._damaged_files: list[RestoredFile] = []
        #: A lazy selection, its listings read as the plan comes to them, on this loop.
        self._selection: Selection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Hard links to damaged files: (path, where kept, the file).
        self._damaged_links: list[tuple[bytes, bytes, RestoredFile]] = []
        self._directories = OpenDirectories(self.target)
        self._writer = FileWriter(
            self._directories, chown=restore_owners(numeric=numeric_owner), on_error=self._error
        )
        self._worker_keys = worker_keys
        self._delegation: Delegation | None = None
        self._plan = RestorePlanner(
            repo,
            self.target,
            path_filter=self.path_filter,
            overwrite=overwrite,
            dry_run=dry_run,
            delete=delete,
            directories=self._directories,
            writer=self._writer,
            summary=self.summary,
            progress=self.progress,
            on_error=self._error,
            on_skip=self._skip,
            on_plan=None if on_plan is None else lambda p, a: on_plan(os.fsdecode(p), a),
            load_listing=self._load_listing,
        )

    async def run(self) -> RestoreSummary:
        """Restore; NothingMatched (before anything is written) if a pattern matches no
        entry of the snapshot."""
        started = time.monotonic()
        with PlanCollection() as collection:
            await self._restore(collection)
        self.summary.duration_seconds = round(time.monotonic() - started, 3)
        self.summary.errors = len(self.summary.error_list)
        self.summary.skipped = len(self.summary.skipped_list)
        return self.summary

    async def _restore(self, collection: PlanCollection) -> None:
        self._loop = asyncio.get_running_loop()
        selection = await select_entries(self.repo, self.snapshot, self.path_filter, lazy=True)
        # A lazy selection adds to this as its listings are read.
        damaged_trees = selection.damaged_trees
        try:
            if not selection.damaged_trees:
                # A pattern may only have missed what a damaged tree hides: then the damage
                # is the news.
                if self.delete and not all(p.matches for p in self.path_filter.excludes):
                    # With --delete an exclude may be there for the target's entries alone.
                    await asyncio.to_thread(self._plan.match_target_entries, selection.root)
                self.path_filter.require_matches(self.snapshot.id)
            # The plan's walk lets go of each directory's entries once planned: hold only
            # the root here (and a lazy selection's walk, which reads the listings).
            root = selection.root
            self._selection = selection if selection.walk is not None else None
            del selection
            if self.dry_run:
                windows = self._plan.plan_dry_run(root)
                del root
                try:
                    await self._plan_dry_run(windows, collection)
                finally:
                    close_walk(windows)
                return
            target_fd = self._directories.open_target()
            try:
                windows = self._plan.plan_dir(root, self._directories.root, target_fd)
                del root
                self._delegation = self._start_workers(target_fd)
                try:
                    await self._fetch_windows(windows, collection)
                finally:
                    close_walk(windows)
                    if self._delegation is not None:
                        await asyncio.to_thread(self._delegation.close)
                        self._delegation = None
                await asyncio.to_thread(self._make_links)
                await asyncio.to_thread(self._finish_dirs)
            finally:
                self._directories.close_all()
            self._report_damage()
        finally:
            self._selection = None
            self.summary.damaged_trees = [
                {"path": t.path, "tree": t.tree, "message": t.message} for t in damaged_trees
            ]

    def _start_workers(self, target_fd: int) -> Delegation | None:
        """Write workers for this restore (they start on first use), or None: no keys, or
        a single core."""
        count = worker_count(max(WRITE_WORKERS, self.workers))
        if self._worker_keys is None or not count:
            return None
        loop = self._loop
        assert loop is not None

        def on_failure(message: str) -> None:
            if self.on_warning is not None:
                warn = self.on_warning
                loop.call_soon_threadsafe(warn, os.fsdecode(self.target), message)

        return Delegation(
            RestoreWorkers(self._worker_keys, target_fd, count=count),
            self._writer,
            on_error=self._error,
            on_failure=on_failure,
        )

    def _load_listing(self, directory: SelectedDir) -> None:
        """Read a lazy selection's listing of `directory` on the event loop (called from
        the planning thread, while the loop runs the reads)."""
        assert self._selection is not None and self._loop is not None
        expand = self._selection.expand(directory)
        asyncio.run_coroutine_threadsafe(expand, self._loop).result()

    async def _plan_dry_run(self, windows: PlanWindows, collection: PlanCollection) -> None:
        more = True
        while more:
            collection.planning()
            more = await asyncio.to_thread(self._plan.plan_next, windows)
            collection.planned()
            files, _ = self._plan.take_window()
            reads, _ = self._plan_reads(files, final=not more)
            self.summary.bytes_to_download += sum(r.end - r.start for r in reads)
        self.summary.bytes = self.progress.bytes_total

    def _error(self, path: bytes, message: str) -> None:
        text = os.fsdecode(path)
        self.summary.error_list.append({"path": text, "message": message})
        if self.on_error is not None:
            self.on_error(text, message)

    def _skip(self, path: bytes, message: str) -> None:
        text = os.fsdecode(path)
        self.summary.skipped_list.append({"path": text, "message": message})
        if self.on_warning is not None:
            self.on_warning(text, message)

    # ---- fetching, window after window (one window's reads: `restore_fetch`) ------------

    async def _fetch_windows(self, windows: PlanWindows, collection: PlanCollection) -> None:
        """Plan window after window, each window's reads running while the next is
        planned; a window is settled (damage noted, --verify) once its reads are done."""
        loop = asyncio.get_running_loop()
        # A thread waits for each write worker's reply.
        threads = self.workers if self._delegation is None else max(self.workers, WRITE_WORKERS)
        pool = ThreadPoolExecutor(threads, thread_name_prefix="bb-restore")
        # Each read is held in memory until its blobs are written: bound the bytes in
        # flight, not only the number of requests (16 S3 connections x 16 MiB packs
        # would be 256 MiB).
        read_bytes = self.read_size or self.repo.config.pack_size
        slots = asyncio.Semaphore(min(self.connections, max(2, MAX_BYTES_IN_FLIGHT // read_bytes)))

        async def one(read: PackRead) -> None:
            async with slots:
                try:
                    data = await self._get(read)
                except (NotFound, IntegrityError) as exc:
                    problem = "pack is missing" if isinstance(exc, NotFound) else str(exc)
                    await loop.run_in_executor(pool, self._lose_read, read, problem)
                    return
                written = await loop.run_in_executor(pool, self._write_read, data, read)
            self.progress.bytes_written += written
            self.summary.bytes += written
            self.progress.files = self._writer.finished

        live: list[PlanWindow] = []
        try:
            more = True
            while more:
                collection.planning()
                more = await asyncio.to_thread(self._plan.plan_next, windows)
                collection.planned()
                files, present = self._plan.take_window()
                reads, lost_places = self._plan_reads(files, final=not more)
                self.summary.bytes_to_download += sum(r.end - r.start for r in reads)
                if not more:
                    self.progress.planned = True
                window = PlanWindow(files, present)
                if lost_places:
                    await loop.run_in_executor(pool, self._lose_places, lost_places)
                window.tasks = [asyncio.ensure_future(one(read)) for read in reads]
                del reads
                live.append(window)
                if len(live) > 1:
                    await self._settle(live.pop(0), window)
            if live:
                await self._settle(live.pop(0), None)
        finally:
            # After a failure, stop reading at once rather than when the loop closes.
            tasks = [task for window in live for task in window.tasks]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            pool.shutdown(wait=True, cancel_futures=True)
            self._writer.close_all()
        self.progress.files = self._writer.finished


__all__ = ["PlanListener", "Restorer"]
