"""The restorer: rebuilds a snapshot's files, links and metadata under a target directory.

Select first (`restore_select`: walk the trees through the patterns), then plan (create
directories and special files, decide per path what `--overwrite` does with what is there,
remove what `--delete` removes), then read the blobs each pack holds for the snapshot with
a few ranged reads, decrypt and verify them in worker threads and write each to every
place it belongs (`restore_files`: a file gets its metadata as its last blob lands). Directories get
theirs last, each after everything in it, so nothing written afterwards disturbs their
times. Everything is reached from the target's descriptor without following a symlink
(`restore_target`), so the restore never writes outside its target.

A blob that cannot be read (its pack missing or damaged) costs only the files that need it:
they are kept as `NAME.bbackup-partial` and listed in the summary with the blobs they lack.
"""

from __future__ import annotations

import asyncio
import errno
import os
import stat
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from bbackup.errors import IntegrityError, NotFound
from bbackup.ops.restore_compare import Action, Overwrite, decide, mismatched_blobs
from bbackup.ops.restore_files import (
    CREATE_FLAGS,
    FileWriter,
    RestoredFile,
    creation_mode,
    partial_name,
)
from bbackup.ops.restore_select import PathFilter, SelectedDir, select_entries
from bbackup.ops.restore_target import (
    DIRECTORY_FLAGS,
    SPECIAL_TYPES,
    OpenDirectories,
    RestoredDir,
    clear_entry,
    join_path,
    make_directory,
    make_special,
    remove_entry,
    set_metadata,
    set_metadata_at,
)
from bbackup.repository import BlobLoader, IndexEntry, pack_object_name
from bbackup.repository.config import RepositoryConfig
from bbackup.snapshot.model import FILE, SOCKET, SYMLINK, Node, Snapshot

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


#: Bytes of fetched ranges held at once, at most (besides the blobs being decoded).
MAX_BYTES_IN_FLIGHT = 96 * 1024 * 1024


@dataclass(slots=True)
class RestoreProgress:
    files: int = 0
    bytes_written: int = 0
    bytes_total: int = 0
    started: float = field(default_factory=time.monotonic)


class RestoreSource(BlobLoader, Protocol):
    """What a restore reads: blobs, and the keyed hash that tells whether a file already
    in the target (or one just written, for --verify) holds them."""

    def blob_id(self, data: bytes | memoryview) -> bytes: ...


@dataclass(slots=True)
class RestoreSummary:
    snapshot_id: str = ""
    dry_run: bool = False
    #: Regular files written (or, with --dry-run, that would be).
    files: int = 0
    dirs: int = 0
    links: int = 0
    #: Plaintext bytes written (with --dry-run: that would be).
    bytes: int = 0
    #: Bytes of pack ranges the restore reads (with --dry-run: would read).
    bytes_to_download: int = 0
    #: Entries already identical to the snapshot's (--overwrite if-changed): not written.
    unchanged: int = 0
    #: Entries left as they were because of --overwrite if-newer or never.
    kept: int = 0
    #: Entries --delete removed (or would remove).
    deleted: int = 0
    errors: int = 0
    error_list: list[dict[str, str]] = field(default_factory=list)
    #: Entries left out on purpose (sockets: nothing can be restored of them).
    skipped: int = 0
    skipped_list: list[dict[str, str]] = field(default_factory=list)
    #: Files that could not be fully restored: path, where they were kept, blobs lost.
    damaged: list[dict[str, Any]] = field(default_factory=list)
    #: Directories whose listing could not be read: nothing below them was restored.
    damaged_trees: list[dict[str, str]] = field(default_factory=list)
    #: --verify: files and bytes read back and found identical, and files that were not.
    verified_files: int = 0
    verified_bytes: int = 0
    verify_failures: list[dict[str, str]] = field(default_factory=list)
    duration_seconds: float = 0.0
    requests: dict[str, int] = field(default_factory=dict)

    @property
    def integrity_failed(self) -> bool:
        """Something the snapshot holds could not be restored or verified (exit 13)."""
        return bool(self.damaged or self.damaged_trees or self.verify_failures)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
    ) -> None:
        """`read_size`: split reads of a pack so none spans more than this many bytes
        (None: one read per run of needed blobs; right where requests cost money).
        `max_gap`: unneeded bytes between needed blobs that one read spans. The patterns
        are checked here: an invalid one is a UsageError before anything is read."""
        self.repo = repo
        self.snapshot = snapshot
        self.target = os.fsencode(os.path.abspath(target))
        self.path_filter = PathFilter(include or (), exclude or ())
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
        self.on_plan = on_plan
        self.progress = RestoreProgress()
        self.summary = RestoreSummary(snapshot_id=snapshot.id, dry_run=dry_run)
        #: Files to write, and files already complete in the target (for --verify).
        self._files: list[RestoredFile] = []
        self._present: list[RestoredFile] = []
        #: Hard links to make once the file they link to is complete.
        self._links: list[tuple[RestoredFile, RestoredDir, bytes]] = []
        #: Directories to give metadata, each after everything below it.
        self._dirs: list[RestoredDir] = []
        self._hardlinks: dict[tuple[int, int], RestoredFile] = {}
        #: Blobs that could not be read: ID → (pack or "", what is wrong).
        self._lost: dict[bytes, tuple[str, str]] = {}
        #: Places no read fills: (file, blob), each counted as landed with a hole.
        self._lost_places: list[tuple[RestoredFile, bytes]] = []
        #: Hard links to damaged files: (path, where kept, the file).
        self._damaged_links: list[tuple[bytes, bytes, RestoredFile]] = []
        self._directories = OpenDirectories(self.target)
        self._writer = FileWriter(self._directories, chown=os.geteuid() == 0, on_error=self._error)

    async def run(self) -> RestoreSummary:
        """Restore; NothingMatched (before anything is written) if a pattern matches no
        entry of the snapshot."""
        started = time.monotonic()
        selection = await select_entries(self.repo, self.snapshot, self.path_filter)
        self.summary.damaged_trees = [
            {"path": t.path, "tree": t.tree, "message": t.message} for t in selection.damaged_trees
        ]
        if not selection.damaged_trees:
            # A pattern may only have missed what a damaged tree hides: then the damage
            # is the news.
            if self.delete and not all(p.matches for p in self.path_filter.excludes):
                # With --delete an exclude may be there for the target's entries alone.
                await asyncio.to_thread(self._match_target_entries, selection.root)
            self.path_filter.require_matches(self.snapshot.id)
        if self.dry_run:
            await asyncio.to_thread(self._plan_dry_run, selection.root)
            reads = self._plan_reads()
            self.summary.bytes_to_download = sum(r.end - r.start for r in reads)
            self.summary.bytes = self.progress.bytes_total
        else:
            target_fd = self._directories.open_target()
            try:
                await asyncio.to_thread(
                    self._plan_dir, selection.root, self._directories.root, target_fd
                )
                reads = self._plan_reads()
                self.summary.bytes_to_download = sum(r.end - r.start for r in reads)
                await self._fetch_all(reads)
                await asyncio.to_thread(self._make_links)
                await asyncio.to_thread(self._finish_dirs)
                if self.verify:
                    await asyncio.to_thread(self._verify_all)
            finally:
                self._directories.close_all()
            self._report_damage()
        self.summary.duration_seconds = round(time.monotonic() - started, 3)
        self.summary.errors = len(self.summary.error_list)
        self.summary.skipped = len(self.summary.skipped_list)
        return self.summary

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

    def _planned(self, path: bytes, action: str) -> None:
        if self.dry_run and self.on_plan is not None:
            self.on_plan(os.fsdecode(path), action)

    # ---- planning ----------------------------------------------------------------------

    def _plan_dry_run(self, root: SelectedDir) -> None:
        """Plan without writing: the target, if it exists, is only looked at."""
        try:
            target_fd: int | None = os.open(
                self.target, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
            )
        except FileNotFoundError:
            target_fd = None
        try:
            self._plan_dir(root, self._directories.root, target_fd)
        finally:
            if target_fd is not None:
                os.close(target_fd)

    def _plan_dir(
        self,
        selected: SelectedDir,
        directory: RestoredDir,
        dir_fd: int | None,
        *,
        fresh: bool = False,
    ) -> None:
        """Plan everything selected in one directory (a worker thread). `dir_fd` is the
        directory's, held open for the walk; None with --dry-run where it does not exist
        yet, so everything in it would be created. `fresh`: the restore just made it, so
        nothing is in it."""
        fresh = fresh or dir_fd is None
        deleting = self.delete and selected.backed_up and not selected.damaged
        if deleting and not fresh:
            assert dir_fd is not None
            self._delete_extraneous(selected, directory, dir_fd)
        for entry in selected.entries:
            if isinstance(entry, SelectedDir):
                self._plan_subdir(entry, directory, dir_fd)
                continue
            path = join_path(directory.path, entry.name)
            if entry.type == SOCKET:
                self._skip(path, "sockets are not restored")
                continue
            try:
                existing, link_target = (None, None) if fresh else self._existing(dir_fd, entry)
                action = decide(self.overwrite, entry, existing, link_target)
                if entry.type == FILE:
                    self._plan_file(directory, dir_fd, entry, existing, action, fresh=fresh)
                else:
                    self._plan_special(directory, dir_fd, entry, existing, action)
            except OSError as exc:
                kind = "" if entry.type == FILE else f" {entry.type}"
                self._error(path, f"cannot create{kind}: {exc.strerror or exc}")

    def _plan_subdir(
        self, selected: SelectedDir, parent: RestoredDir, parent_fd: int | None
    ) -> None:
        assert selected.node is not None
        name = selected.node.name
        directory = RestoredDir(parent, name, join_path(parent.path, name))
        if self.dry_run:
            fd: int | None = None
            if parent_fd is not None:
                try:
                    fd = os.open(name, DIRECTORY_FLAGS, dir_fd=parent_fd)
                except OSError:
                    self._planned(directory.path, "create directory")
            try:
                self._plan_dir(selected, directory, fd)
            finally:
                if fd is not None:
                    os.close(fd)
            if selected.wanted:
                self.summary.dirs += 1
            return
        assert parent_fd is not None
        try:
            created = make_directory(parent_fd, name)
            fd = self._directories.acquire(directory)
        except OSError as exc:
            self._error(directory.path, f"cannot create directory: {exc.strerror or exc}")
            return
        try:
            self._plan_dir(selected, directory, fd, fresh=created)
        finally:
            self._directories.release(directory)
        if selected.wanted:
            directory.node = selected.node
            self._dirs.append(directory)

    def _existing(
        self, dir_fd: int | None, node: Node
    ) -> tuple[os.stat_result | None, bytes | None]:
        """What is at the node's path now (lstat), and its link target if a symlink."""
        if dir_fd is None:
            return None, None
        try:
            st = os.stat(node.name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return None, None
        target = None
        if stat.S_ISLNK(st.st_mode) and node.type == SYMLINK:
            target = os.readlink(node.name, dir_fd=dir_fd)
        return st, target

    def _plan_file(
        self,
        parent: RestoredDir,
        parent_fd: int | None,
        node: Node,
        existing: os.stat_result | None,
        action: Action,
        *,
        fresh: bool,
    ) -> None:
        """Decide about one file; files with content are created by their first write,
        under their partial name, and renamed once complete."""
        name = node.name
        path = join_path(parent.path, name)
        file = RestoredFile(parent, name, node, pending=len(node.content))
        if action is Action.COMPARE:
            action = self._compare(parent_fd, file)
        if action is Action.KEEP:
            self.summary.kept += 1
            self._planned(path, "keep")
            return
        if action is Action.UNCHANGED:
            self.summary.unchanged += 1
            self._planned(path, "unchanged")
            if not self.dry_run:
                assert parent_fd is not None
                self._update_in_place(parent_fd, file)
            return
        self._planned(path, "write")
        key = (node.device, node.inode)
        first = self._hardlinks.get(key) if node.nlink > 1 else None
        if first is None:
            self.summary.files += 1
            self.progress.bytes_total += node.size
        if not self.dry_run:
            assert parent_fd is not None
            if existing is not None and stat.S_ISDIR(existing.st_mode):
                clear_entry(parent_fd, name)  # a file cannot be renamed over a directory
            if not fresh:
                clear_entry(parent_fd, file.partial)  # left by an interrupted restore
        if first is not None:
            self._links.append((first, parent, name))
            return
        if node.nlink > 1:
            self._hardlinks[key] = file
        if node.content:
            self._files.append(file)
            return
        if self.dry_run:
            return
        assert parent_fd is not None
        # An empty file is complete once created: it goes straight to its name.
        if existing is not None:
            clear_entry(parent_fd, name)
        fd = os.open(name, CREATE_FLAGS, creation_mode(node), dir_fd=parent_fd)
        file.created = True
        try:
            self._writer.finish_unwritten(file, fd)
        finally:
            os.close(fd)

    def _compare(self, parent_fd: int | None, file: RestoredFile) -> Action:
        """--overwrite if-changed for a file of the right size but another mtime: its
        content, blob by blob, decides (a local read costs far less than a download)."""
        assert parent_fd is not None
        try:
            layout = self._layout(file.node)
            fd = os.open(file.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent_fd)
        except (OSError, IntegrityError):
            return Action.REPLACE
        try:
            mismatched, _ = mismatched_blobs(fd, layout, self.repo.blob_id)
        finally:
            os.close(fd)
        return Action.REPLACE if mismatched else Action.UNCHANGED

    def _layout(self, node: Node) -> list[tuple[bytes, int]]:
        """(blob ID, plaintext length) of each blob of a file's content, in order."""
        lookup = self.repo.index.lookup
        return [(blob_id, lookup(blob_id).raw_length) for blob_id in node.content]

    def _update_in_place(self, parent_fd: int, file: RestoredFile) -> None:
        """An unchanged file keeps its content; its owner, mode and times become the
        snapshot's (it has no other links: `decide` saw to that)."""
        try:
            fd = os.open(file.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent_fd)
            try:
                set_metadata(fd, file.node, chown=self._writer.chown)
            finally:
                os.close(fd)
        except OSError as exc:
            self._error(file.path, f"cannot set metadata: {exc.strerror or exc}")
        file.done = True
        self._present.append(file)

    def _plan_special(
        self,
        parent: RestoredDir,
        parent_fd: int | None,
        node: Node,
        existing: os.stat_result | None,
        action: Action,
    ) -> None:
        """Make a symlink, FIFO or device node in place of what is there, with its metadata."""
        if node.type not in SPECIAL_TYPES:
            raise OSError(errno.EINVAL, "not a type of entry this version can restore")
        path = join_path(parent.path, node.name)
        if action is Action.KEEP:
            self.summary.kept += 1
            self._planned(path, "keep")
            return
        if action is Action.UNCHANGED:
            self.summary.unchanged += 1
            self._planned(path, "unchanged")
        else:
            self._planned(path, "write")
        if self.dry_run:
            return
        assert parent_fd is not None
        if action is not Action.UNCHANGED:
            if existing is not None:
                clear_entry(parent_fd, node.name)
            make_special(parent_fd, node.name, node)
        try:
            set_metadata_at(parent_fd, node.name, node, chown=self._writer.chown)
        except OSError as exc:
            self._error(path, f"cannot set metadata: {exc.strerror or exc}")

    def _delete_extraneous(
        self, selected: SelectedDir, directory: RestoredDir, dir_fd: int
    ) -> None:
        """--delete: remove what this directory holds and the snapshot's listing of it
        lacks, where the patterns would have selected it; never following a symlink."""
        for text in sorted(os.listdir(dir_fd)):
            name = os.fsencode(text)
            if name in selected.names:
                continue
            rel = selected.rel + b"/" + name
            if self.path_filter.excluded(rel, count=False):
                continue
            if not (selected.included or self.path_filter.included(rel, count=False)):
                continue
            path = join_path(directory.path, name)
            self.summary.deleted += 1
            self._planned(path, "delete")
            if self.dry_run:
                continue
            try:
                remove_entry(dir_fd, name)
            except OSError as exc:
                self._error(path, f"cannot delete: {exc.strerror or exc}")

    def _match_target_entries(self, root: SelectedDir) -> None:
        """Try the excludes on the entries --delete would look at, read-only, so an
        exclude that only keeps a target entry from deletion counts as matching."""

        def walk(selected: SelectedDir, dir_fd: int) -> None:
            if selected.backed_up and not selected.damaged:
                for text in os.listdir(dir_fd):
                    name = os.fsencode(text)
                    if name not in selected.names:
                        self.path_filter.excluded(selected.rel + b"/" + name)
            for entry in selected.entries:
                if isinstance(entry, SelectedDir) and entry.node is not None:
                    try:
                        fd = os.open(entry.node.name, DIRECTORY_FLAGS, dir_fd=dir_fd)
                    except OSError:
                        continue
                    try:
                        walk(entry, fd)
                    finally:
                        os.close(fd)

        try:
            target_fd = os.open(self.target, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return
        try:
            walk(root, target_fd)
        finally:
            os.close(target_fd)

    def _plan_reads(self) -> list[PackRead]:
        """Every needed blob once, with all its places, grouped into reads pack by pack.
        A blob the index does not know is lost from the start, and so are the later blobs
        of the same file: their offsets are unknown without its length."""
        needed: dict[bytes, NeededBlob] = {}
        lookup = self.repo.index.lookup
        for file in self._files:
            offset: int | None = 0
            for blob_id in file.node.content:
                blob = needed.get(blob_id)
                if blob is None and blob_id not in self._lost:
                    try:
                        blob = needed[blob_id] = NeededBlob(blob_id, lookup(blob_id))
                    except IntegrityError:
                        self._lost[blob_id] = ("", "not in the index")
                if blob is None or offset is None:
                    self._lost_places.append((file, blob_id))
                    offset = None
                    continue
                blob.places.append((file, offset))
                offset += blob.entry.raw_length
        by_pack: dict[str, list[NeededBlob]] = {}
        for blob in needed.values():
            if blob.places:
                by_pack.setdefault(blob.entry.pack_id, []).append(blob)
        return [
            read
            for blobs in by_pack.values()
            for read in plan_reads(blobs, max_gap=self.max_gap, max_bytes=self.read_size)
        ]

    # ---- fetching ----------------------------------------------------------------------

    async def _fetch_all(self, reads: list[PackRead]) -> None:
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

        if self._lost_places:
            await loop.run_in_executor(pool, self._lose_places, self._lost_places)
        tasks = [asyncio.ensure_future(one(read)) for read in reads]
        try:
            await asyncio.gather(*tasks)
        finally:
            # After a failure, stop reading at once rather than when the loop closes.
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            pool.shutdown(wait=True, cancel_futures=True)
            self._writer.close_all()
        self.progress.files = self._writer.finished

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
        for first, parent, name in self._links:
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
        for directory in self._dirs:
            assert directory.node is not None
            try:
                fd = self._directories.acquire(directory)
                try:
                    set_metadata(fd, directory.node, chown=self._writer.chown)
                finally:
                    self._directories.release(directory)
            except OSError as exc:
                self._error(directory.path, f"cannot set metadata: {exc.strerror or exc}")
            self.summary.dirs += 1

    def _verify_all(self) -> None:
        """--verify: read every restored file back (written or found unchanged) and compare
        each blob-sized piece with the snapshot's blob ID."""
        files = [f for f in [*self._files, *self._present] if f.done]
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
            layout = self._layout(file.node)
            parent_fd = self._directories.acquire(file.parent)
            try:
                flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
                fd = os.open(file.name, flags, dir_fd=parent_fd)
            finally:
                self._directories.release(file.parent)
            try:
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
            (f.path, join_path(f.parent.path, f.partial), f) for f in self._files if f.missing
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
