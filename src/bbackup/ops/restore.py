"""The restorer: rebuilds a snapshot's files, links and metadata under a target directory.

Select first (`restore_select`: walk the trees through the patterns; without patterns
each directory's listing is read only when the plan comes to it), then plan
(`restore_plan`: decide per path what `--overwrite` does with what is there, make
directories and special files, remove what `--delete` removes), then read the blobs each
pack holds for the snapshot with a few ranged reads, decrypt and verify them in worker
threads and write each to every place it belongs (`restore_files`: a file gets its
metadata as its last blob lands). The plan goes window by window (`restore_plan`), each
window's reads running while the next is planned, so a restore holds two windows' plan,
not the snapshot's. Directories get their metadata last, each after everything in it, so
nothing written afterwards disturbs their times. Everything is reached from the
target's descriptor without following a symlink (`restore_target`), so the restore never
writes outside its target.

A blob that cannot be read (its pack missing or damaged) costs only the files that need it:
they are kept as `NAME.bbackup-partial` and listed in the summary with the blobs they lack.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from bbackup.errors import IntegrityError, NotFound
from bbackup.ops.restore_compare import Overwrite, blob_layout, mismatched_blobs
from bbackup.ops.restore_files import FileWriter, RestoredFile, partial_name
from bbackup.ops.restore_gc import PlanCollection
from bbackup.ops.restore_metadata import restore_owners, set_metadata
from bbackup.ops.restore_plan import (
    PlanWindows,
    RestorePlanner,
    RestoreProgress,
    RestoreSource,
    RestoreSummary,
)
from bbackup.ops.restore_select import PathFilter, SelectedDir, Selection, select_entries
from bbackup.ops.restore_target import (
    OpenDirectories,
    clear_entry,
    join_path,
)
from bbackup.repository import IndexEntry, Repository, pack_object_name
from bbackup.repository.config import RepositoryConfig
from bbackup.snapshot.model import Snapshot

#: Blobs of one pack further apart than this are fetched with separate ranged reads.
MAX_RANGE_GAP = 1024 * 1024
#: Beyond a chunk's size, what a sealed chunk may take (AEAD tag, header, zstd frame).
_SEAL_SLACK = 64 * 1024


def remote_range_gap(config: RepositoryConfig) -> int:
    """The unneeded bytes a read of a remote pack skips rather than split in two: one
    largest chunk. A chunk left between needed ones (the old version of an edited part of
    a file) then costs a few MiB of transfer, about what a request waits for its first
    byte, instead of a second request; longer runs (a deleted file) still split."""
    return config.chunker.max_size + _SEAL_SLACK


@dataclass(frozen=True, slots=True)
class PackReadSettings:
    """How a command reads a repository's packs: calls in flight, the most of a pack one
    read spans, and the gap one read skips over (restore, dump, drill, copy's source)."""

    connections: int
    read_size: int | None
    max_gap: int


def pack_read_settings(repo: Repository, connections: int | None = None) -> PackReadSettings:
    """The read settings for `repo`'s kind of store; `connections` (--connections) over
    its default."""
    profile = repo.stack.profile
    return PackReadSettings(
        connections=connections or profile.default_connections,
        read_size=profile.read_size,
        max_gap=remote_range_gap(repo.config) if profile.range_gap is None else profile.range_gap,
    )


#: Bytes of fetched ranges held at once, at most (besides the blobs being decoded). 64
#: MiB restores as fast as 96 did from S3 at 30 ms a request and holds ~40 MiB less
#: (3 alternating repeats against restic 0.18: docs/bench/session8.md, "S3 read budget").
MAX_BYTES_IN_FLIGHT = 64 * 1024 * 1024


@dataclass(slots=True)
class NeededBlob:
    """A blob the restore needs, with every (file, offset) its plaintext goes to."""

    blob_id: bytes
    entry: IndexEntry
    places: list[tuple[RestoredFile, int]] = field(default_factory=list)


@dataclass(slots=True)
class PackRead:
    """One ranged read of a pack: needed blobs that lie close together."""

    blobs: list[NeededBlob]

    @property
    def start(self) -> int:
        return self.blobs[0].entry.offset

    @property
    def end(self) -> int:
        last = self.blobs[-1].entry
        return last.offset + last.length


def plan_reads(
    blobs: Iterable[NeededBlob], *, max_gap: int = MAX_RANGE_GAP, max_bytes: int | None = None
) -> list[PackRead]:
    """Group the needed blobs of one pack into ranged reads, in pack order.

    A read skips gaps of up to `max_gap` unneeded bytes and spans at most `max_bytes`
    (None: no limit; a blob larger than that is read on its own).
    """
    reads: list[PackRead] = []
    for blob in sorted(blobs, key=lambda b: b.entry.offset):
        if reads:
            read = reads[-1]
            entry = blob.entry
            if entry.offset - read.end <= max_gap and (
                max_bytes is None or entry.offset + entry.length - read.start <= max_bytes
            ):
                read.blobs.append(blob)
                continue
        reads.append(PackRead([blob]))
    return reads


#: A path's action, for --dry-run listings: (path, "write" | "delete" | ...).
PlanListener = Callable[[str, str], None]

#: The packs the last this-many files of a window need are read with the next window:
#: a pack the boundary splits (the backup wrote files in the order the plan walks them)
#: is then read once, as without windows.
_CARRY_FILES = 64


@dataclass(slots=True, eq=False)
class PlanWindow:
    """One window of the plan on its way: its reads' tasks, and the files to settle
    (note as damaged, --verify) once they are done."""

    files: list[RestoredFile]
    present: list[RestoredFile]
    tasks: list[asyncio.Future[None]] = field(default_factory=list)


def close_walk(windows: PlanWindows) -> None:
    """Stop the plan's walk, releasing the directories it holds open; a walk still running
    in its thread (the restore was cancelled meanwhile) cannot be stopped and ends with it."""
    with contextlib.suppress(ValueError):
        windows.close()


class Restorer:
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
    ) -> None:
        """`read_size`: split reads of a pack so none spans more than this many bytes
        (None: one read per run of needed blobs; right where requests cost money).
        `max_gap`: unneeded bytes between needed blobs that one read spans. The patterns
        are checked here: an invalid one is a UsageError before anything is read.
        `numeric_owner`: owners by their recorded numbers, not by name (run as root).
        `path_filter`, instead of the patterns: a selection of the caller's (a drill's
        sample of exact paths)."""
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
                try:
                    await self._fetch_windows(windows, collection)
                finally:
                    close_walk(windows)
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

    def _plan_reads(
        self, files: list[RestoredFile], *, final: bool
    ) -> tuple[list[PackRead], list[tuple[RestoredFile, bytes]]]:
        """A window's reads: every needed blob once (with those carried over from the
        last window), with all its places, grouped into reads pack by pack; and the
        places no read fills. A blob the index does not know is lost from the start, and
        so are the later blobs of the same file: their offsets are unknown without its
        length. Unless `final`, the blobs of the packs the window's last files need are
        carried over to the next window instead of read now."""
        needed, self._carried = self._carried, {}
        lost_places: list[tuple[RestoredFile, bytes]] = []
        last_packs: set[str] = set()
        tail = len(files) - _CARRY_FILES
        lookup = self.repo.index.lookup
        for n, file in enumerate(files):
            offset: int | None = 0
            for i, blob_id in enumerate(file.node.content):
                blob = needed.get(blob_id)
                if blob is None and blob_id not in self._lost:
                    try:
                        blob = needed[blob_id] = NeededBlob(blob_id, lookup(blob_id))
                    except IntegrityError:
                        self._lost[blob_id] = ("", "not in the index")
                if blob is None or offset is None:
                    lost_places.append((file, blob_id))
                    offset = None
                    continue
                if i not in file.reused:
                    blob.places.append((file, offset))
                    if n >= tail:
                        last_packs.add(blob.entry.pack_id)
                offset += blob.entry.raw_length
        by_pack: dict[str, list[NeededBlob]] = {}
        for blob in needed.values():
            if not blob.places:
                continue
            if not final and blob.entry.pack_id in last_packs:
                self._carried[blob.blob_id] = blob
            else:
                by_pack.setdefault(blob.entry.pack_id, []).append(blob)
        reads = [
            read
            for blobs in by_pack.values()
            for read in plan_reads(blobs, max_gap=self.max_gap, max_bytes=self.read_size)
        ]
        return reads, lost_places

    # ---- fetching ----------------------------------------------------------------------

    async def _fetch_windows(self, windows: PlanWindows, collection: PlanCollection) -> None:
        """Plan window after window, each window's reads running while the next is
        planned; a window is settled (damage noted, --verify) once its reads are done."""
        loop = asyncio.get_running_loop()
        pool = ThreadPoolExecutor(self.workers, thread_name_prefix="bb-restore")
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

    async def _settle(self, window: PlanWindow, following: PlanWindow | None) -> None:
        """Wait for a window's reads; then note its damaged files and verify the rest
        (--verify). A file still waiting for blobs carried over is settled with the
        following window."""
        tasks, window.tasks = window.tasks, []
        await asyncio.gather(*tasks)
        settled: list[RestoredFile] = []
        for file in window.files:
            if file.pending and following is not None:
                following.files.append(file)
            elif file.missing:
                self._damaged_files.append(file)
            else:
                settled.append(file)
        if self.verify:
            done = [f for f in [*settled, *window.present] if f.done]
            await asyncio.to_thread(self._verify_files, done)

    async def _get(self, read: PackRead) -> bytes:
        first = read.blobs[0].entry
        name = pack_object_name(first.blob_type, first.pack_id)
        data = await self.repo.read_pack(name, read.start, read.end - read.start)
        if len(data) != read.end - read.start:
            raise IntegrityError("pack is truncated")
        return data

    def _write_read(self, data: bytes, read: PackRead) -> int:
        """Decode every blob of one read and write it to all its places (a worker thread).
        A blob that does not decode is lost; the others of the read are still written."""
        written = 0
        start = read.start
        view = memoryview(data)
        for blob in read.blobs:
            entry = blob.entry
            sealed = view[entry.offset - start : entry.offset - start + entry.length]
            try:
                plain = self.repo.decode_blob(blob.blob_id, entry, sealed)
            except IntegrityError as exc:
                problem = str(exc).removeprefix(f"blob {blob.blob_id.hex()[:16]}")
                self._lose_blob(blob, problem.lstrip(": "))
                continue
            for file, offset in blob.places:
                self._writer.write(file, plain, offset)
            written += len(plain) * len(blob.places)
        # Its blobs (index entries, places) are done with: free them as the restore goes.
        read.blobs.clear()
        return written

    def _lose_read(self, read: PackRead, problem: str) -> None:
        for blob in read.blobs:
            self._lose_blob(blob, problem)

    def _lose_blob(self, blob: NeededBlob, problem: str) -> None:
        entry = blob.entry
        self._lost[blob.blob_id] = (pack_object_name(entry.blob_type, entry.pack_id), problem)
        for file, _ in blob.places:
            self._writer.skip(file, blob.blob_id)

    def _lose_places(self, places: list[tuple[RestoredFile, bytes]]) -> None:
        for file, blob_id in places:
            self._writer.skip(file, blob_id)

    # ---- after the data ----------------------------------------------------------------

    def _make_links(self) -> None:
        """Hard links, to files now complete (or to the partial file of a damaged one, at
        the link's partial name: it is just as incomplete)."""
        for first, parent, name in self._plan.links:
            source = first.name if first.done else first.partial
            link = name if first.done else partial_name(name)
            path = join_path(parent.path, link)
            try:
                first_fd = self._directories.acquire(first.parent)
                try:
                    parent_fd = self._directories.acquire(parent)
                    try:
                        clear_entry(parent_fd, link)
                        os.link(
                            source,
                            link,
                            src_dir_fd=first_fd,
                            dst_dir_fd=parent_fd,
                            follow_symlinks=False,
                        )
                    finally:
                        self._directories.release(parent)
                finally:
                    self._directories.release(first.parent)
            except OSError as exc:
                self._error(path, f"cannot create hard link: {exc.strerror or exc}")
                continue
            self.summary.links += 1
            if first.missing:
                self._damaged_links.append((join_path(parent.path, name), path, first))

    def _finish_dirs(self) -> None:
        """Directory metadata, each directory after everything below it (`_dirs` is in
        that order), through its own descriptor."""
        for directory in self._plan.dirs:
            assert directory.node is not None
            try:
                fd = self._directories.acquire(directory)
                try:
                    bare = directory.created and not (
                        directory.parent is None or directory.parent.default_acl
                    )
                    set_metadata(fd, directory.node, chown=self._writer.chown, bare=bare)
                finally:
                    self._directories.release(directory)
            except OSError as exc:
                self._error(directory.path, f"cannot set metadata: {exc.strerror or exc}")
            self.summary.dirs += 1

    def _verify_files(self, files: list[RestoredFile]) -> None:
        """--verify: read restored files back (written or found unchanged) and compare
        each blob-sized piece with the snapshot's blob ID."""
        with ThreadPoolExecutor(self.workers, thread_name_prefix="bb-verify") as pool:
            for file, result in zip(files, pool.map(self._verify_file, files), strict=True):
                if isinstance(result, str):
                    self.summary.verify_failures.append(
                        {"path": os.fsdecode(file.path), "message": result}
                    )
                else:
                    self.summary.verified_files += 1
                    self.summary.verified_bytes += result

    def _verify_file(self, file: RestoredFile) -> int | str:
        """Bytes verified, or what is wrong."""
        try:
            layout = blob_layout(self.repo.index.lookup, file.node)
            parent_fd = self._directories.acquire(file.parent)
            try:
                # Non-blocking: a FIFO swapped in since the write must not hang the open.
                flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
                fd = os.open(file.name, flags, dir_fd=parent_fd)
            finally:
                self._directories.release(file.parent)
            try:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    return "cannot verify: no longer a regular file"
                mismatched, read = mismatched_blobs(fd, layout, self.repo.blob_id)
            finally:
                os.close(fd)
        except (OSError, IntegrityError) as exc:
            return f"cannot verify: {getattr(exc, 'strerror', None) or exc}"
        if not mismatched:
            return read
        offsets = [sum(length for _, length in layout[:i]) for i in mismatched]
        where = ", ".join(str(o) for o in offsets[:5])
        return f"content differs from the snapshot at {len(mismatched)} place(s), offset {where}"

    def _report_damage(self) -> None:
        """The files that lost blobs, where they were kept, and which blobs they lack."""
        reported: list[tuple[bytes, bytes, RestoredFile]] = [
            (f.path, join_path(f.parent.path, f.partial), f) for f in self._damaged_files
        ]
        for path, kept, file in sorted([*reported, *self._damaged_links], key=lambda r: r[0]):
            blobs = []
            for blob_id in dict.fromkeys(file.missing):
                pack, problem = self._lost.get(
                    blob_id, ("", "its place follows a blob missing from the index")
                )
                blobs.append({"id": blob_id.hex(), "pack": pack, "problem": problem})
            self.summary.damaged.append(
                {"path": os.fsdecode(path), "kept_as": os.fsdecode(kept), "blobs": blobs}
            )
        # `files` counts the files restored whole; a damaged one is not.
        self.summary.files -= len(reported)


__all__ = [
    "MAX_RANGE_GAP",
    "NeededBlob",
    "PackRead",
    "PackReadSettings",
    "RestoreProgress",
    "RestoreSource",
    "RestoreSummary",
    "Restorer",
    "pack_read_settings",
    "plan_reads",
    "remote_range_gap",
]
