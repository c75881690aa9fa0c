"""The restore's plan: one walk over what `restore_select` selected and over the target,
deciding per path what `--overwrite` does with what is there, making directories, special
files and empty files, removing what `--delete` removes, and noting the files whose blobs
are to be fetched. With --dry-run the target is only looked at and nothing is made.

The walk is a generator that stops whenever a window of files is planned, so the restorer
fetches those while the walk holds its place: memory follows the window, not the snapshot.
"""

from __future__ import annotations

import errno
import os
import stat
import time
from collections.abc import Callable, Generator
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from bbackup.errors import IntegrityError
from bbackup.ops.posix_acl import has_default_acl
from bbackup.ops.restore_compare import Action, Overwrite, blob_layout, decide, mismatched_blobs
from bbackup.ops.restore_files import (
    CREATE_FLAGS,
    FileWriter,
    RestoredFile,
    creation_mode,
    partial_name,
)
from bbackup.ops.restore_metadata import set_metadata, set_metadata_at
from bbackup.ops.restore_select import PathFilter, SelectedDir
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
)
from bbackup.repository import BlobLoader
from bbackup.snapshot.model import FILE, SOCKET, SYMLINK, Node


@dataclass(slots=True)
class RestoreProgress:
    files: int = 0
    bytes_written: int = 0
    bytes_total: int = 0
    #: Planning is over: `bytes_total` is final (while planning it only grows).
    planned: bool = False
    started: float = field(default_factory=time.monotonic)


#: The plan is handed over in windows of this many files (to write, or found unchanged)
#: or blobs, whichever comes first: a window of small files holds ~1 KiB each (node,
#: file and blob records), so two windows in hand (one fetched while the next is planned)
#: stay near 40 MiB at any snapshot size (docs/bench/session9.md, "Restore memory at many
#: files"). Packs that a window boundary splits cost no second read (`restore` carries
#: the last packs over).
WINDOW_FILES = 16_384
WINDOW_BLOBS = 65_536

#: A window's walk: yields each time a window is planned.
PlanWindows = Generator[None, None, None]

#: Opens a file already in the target to read it: never through a symlink, never
#: blocking on a FIFO swapped in since its lstat.
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class RestoreSource(BlobLoader, Protocol):
    """What a restore reads: blobs, and the keyed hash that tells whether a file already
    in the target (or one just written, for --verify) holds them."""

    def blob_id(self, data: bytes | memoryview) -> bytes: ...


@dataclass(slots=True)
class RestoreSummary:
    snapshot_id: str = ""
    dry_run: bool = False
    #: Regular files restored whole (with --dry-run: that would be written); damaged
    #: ones are in `damaged` instead, hard links in `links`.
    files: int = 0
    dirs: int = 0
    links: int = 0
    #: Plaintext bytes written (with --dry-run: that would be).
    bytes: int = 0
    #: Plaintext bytes an interrupted restore's partial files already held in place.
    bytes_reused: int = 0
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


#: Where a restore reports what happens at a path: (path, message or action).
PathEvent = Callable[[bytes, str], None]


class RestorePlanner:
    """Plans one restore into `directories`' target; what it notes for the fetch is in
    `files`, `links` and `dirs` afterwards."""

    def __init__(
        self,
        repo: RestoreSource,
        target: bytes,
        *,
        path_filter: PathFilter,
        overwrite: Overwrite,
        dry_run: bool,
        delete: bool,
        directories: OpenDirectories,
        writer: FileWriter,
        summary: RestoreSummary,
        progress: RestoreProgress,
        on_error: PathEvent,
        on_skip: PathEvent,
        on_plan: PathEvent | None,
        load_listing: Callable[[SelectedDir], None] | None = None,
    ) -> None:
        """`load_listing`: reads a lazy selection's directory listing (`SelectedDir.tree`)
        when the walk comes to it."""
        self.repo = repo
        self.target = target
        self.path_filter = path_filter
        self.overwrite = overwrite
        self.dry_run = dry_run
        self.delete = delete
        self.directories = directories
        self.writer = writer
        self.summary = summary
        self.progress = progress
        self.on_error = on_error
        self.on_skip = on_skip
        self.on_plan = on_plan
        self.load_listing = load_listing
        #: This window's files to write, and files already complete in the target (for
        #: --verify); `take_window` hands them over.
        self.files: list[RestoredFile] = []
        self.present: list[RestoredFile] = []
        #: Hard links to make once the file they link to is complete.
        self.links: list[tuple[RestoredFile, RestoredDir, bytes]] = []
        #: Directories to give metadata, each after everything below it.
        self.dirs: list[RestoredDir] = []
        self._hardlinks: dict[tuple[int, int], RestoredFile] = {}
        self._window_blobs = 0

    def plan_next(self, windows: PlanWindows) -> bool:
        """Plan the next window (a worker thread); False once the walk is over."""
        return next(windows, False) is None

    def take_window(self) -> tuple[list[RestoredFile], list[RestoredFile]]:
        """The window just planned: its files to write and its files found complete."""
        files, present = self.files, self.present
        self.files, self.present, self._window_blobs = [], [], 0
        return files, present

    def _window_full(self) -> bool:
        return (
            len(self.files) + len(self.present) >= WINDOW_FILES
            or self._window_blobs >= WINDOW_BLOBS
        )

    def _planned(self, path: bytes, action: str) -> None:
        if self.dry_run and self.on_plan is not None:
            self.on_plan(path, action)

    def plan_dry_run(self, root: SelectedDir) -> PlanWindows:
        """Plan without writing: the target, if it exists, is only looked at."""
        try:
            target_fd: int | None = os.open(
                self.target, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
            )
        except FileNotFoundError:
            target_fd = None
        try:
            yield from self.plan_dir(root, self.directories.root, target_fd)
        finally:
            if target_fd is not None:
                os.close(target_fd)

    def plan_dir(
        self,
        selected: SelectedDir,
        directory: RestoredDir,
        dir_fd: int | None,
        *,
        fresh: bool = False,
    ) -> PlanWindows:
        """Plan everything selected in one directory (a worker thread), stopping after
        each full window. `dir_fd` is the directory's, held open for the walk; None with
        --dry-run where it does not exist yet, so everything in it would be created.
        `fresh`: the restore just made it, so nothing is in it."""
        if selected.tree is not None and self.load_listing is not None:
            self.load_listing(selected)
        fresh = fresh or dir_fd is None
        deleting = self.delete and selected.backed_up and not selected.damaged
        if deleting and not fresh:
            assert dir_fd is not None
            self._delete_extraneous(selected, directory, dir_fd)
        # Each entry is let go once planned: what the plan keeps of it is in its window.
        entries, selected.entries = selected.entries, []
        entries.reverse()
        while entries:
            if self._window_full():
                yield None
            entry = entries.pop()
            if isinstance(entry, SelectedDir):
                yield from self._plan_subdir(entry, directory, dir_fd)
                continue
            path = join_path(directory.path, entry.name)
            if entry.type == SOCKET:
                self.on_skip(path, "sockets are not restored")
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
                self.on_error(path, f"cannot create{kind}: {exc.strerror or exc}")

    def _plan_subdir(
        self, selected: SelectedDir, parent: RestoredDir, parent_fd: int | None
    ) -> PlanWindows:
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
                yield from self.plan_dir(selected, directory, fd)
            finally:
                if fd is not None:
                    os.close(fd)
            if selected.wanted:
                self.summary.dirs += 1
            return
        assert parent_fd is not None
        try:
            created = make_directory(parent_fd, name)
            fd = self.directories.acquire(directory)
            # A directory made now inherits its parent's default ACL, and nothing else;
            # one that was there is asked.
            directory.created = created
            directory.default_acl = parent.default_acl if created else has_default_acl(fd)
        except OSError as exc:
            self.on_error(directory.path, f"cannot create directory: {exc.strerror or exc}")
            return
        try:
            yield from self.plan_dir(selected, directory, fd, fresh=created)
        finally:
            self.directories.release(directory)
        if selected.wanted:
            directory.node = selected.node
            self.dirs.append(directory)

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
                self._update_in_place(parent_fd, file, existing)
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
        if node.nlink > 1 and first is None:
            self._hardlinks[key] = file
        if first is None and node.content:
            if not fresh:
                assert parent_fd is not None
                self._reuse_partial(parent_fd, file)
            self.files.append(file)
            self._window_blobs += len(node.content)
            return
        if self.dry_run:
            return
        assert parent_fd is not None
        if not fresh:
            clear_entry(parent_fd, file.partial)  # left by an interrupted restore
        if first is not None:
            self.links.append((first, parent, name))
            return
        # An empty file is complete once created: it goes straight to its name.
        if existing is not None:
            clear_entry(parent_fd, name)
        fd = os.open(name, CREATE_FLAGS, creation_mode(node), dir_fd=parent_fd)
        file.created = file.fresh = True
        try:
            self.writer.finish_unwritten(file, fd)
        finally:
            os.close(fd)

    def _reuse_partial(self, parent_fd: int, file: RestoredFile) -> None:
        """A partial file an interrupted (or damaged) restore left for this file: the
        blobs it already holds at their places are kept and not downloaded again, the
        rest is written into it. Anything else there (a symlink, a file with other
        links, nothing useful) is removed, never written through."""
        try:
            st = os.stat(file.partial, dir_fd=parent_fd, follow_symlinks=False)
        except FileNotFoundError:
            return
        reused: frozenset[int] = frozenset()
        if stat.S_ISREG(st.st_mode) and st.st_nlink == 1:
            reused = self._blobs_in_place(parent_fd, file)
        if not reused:
            if not self.dry_run:
                clear_entry(parent_fd, file.partial)
            return
        file.reused = reused
        file.pending -= len(reused)
        file.created = not self.dry_run
        layout = blob_layout(self.repo.index.lookup, file.node)
        kept = sum(layout[i][1] for i in reused)
        self.summary.bytes_reused += kept
        self.progress.bytes_total -= kept
        if file.pending == 0 and not self.dry_run:
            self.writer.finish_reused(file)

    def _blobs_in_place(self, parent_fd: int, file: RestoredFile) -> frozenset[int]:
        """Indices of the file's blobs its partial file holds at their places (a worker
        thread); the partial is cut to the file's size if longer."""
        access = os.O_RDONLY if self.dry_run else os.O_RDWR  # a longer one is cut
        flags = access | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            layout = blob_layout(self.repo.index.lookup, file.node)
            fd = os.open(file.partial, flags, dir_fd=parent_fd)
        except (OSError, IntegrityError):
            return frozenset()
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
                return frozenset()  # swapped since the lstat
            mismatched, _ = mismatched_blobs(fd, layout, self.repo.blob_id)
            if not self.dry_run and st.st_size > file.node.size:
                os.ftruncate(fd, file.node.size)
            file.identity = (st.st_dev, st.st_ino)
        except OSError:
            return frozenset()
        finally:
            os.close(fd)
        return frozenset(range(len(layout))) - frozenset(mismatched)

    def _compare(self, parent_fd: int | None, file: RestoredFile) -> Action:
        """--overwrite if-changed for a file of the right size but another mtime: its
        content, blob by blob, decides (a local read costs far less than a download)."""
        assert parent_fd is not None
        try:
            layout = blob_layout(self.repo.index.lookup, file.node)
            fd = os.open(file.name, _READ_FLAGS, dir_fd=parent_fd)
        except (OSError, IntegrityError):
            return Action.REPLACE
        try:
            mismatched, _ = mismatched_blobs(fd, layout, self.repo.blob_id)
        finally:
            os.close(fd)
        return Action.REPLACE if mismatched else Action.UNCHANGED

    def _update_in_place(
        self, parent_fd: int, file: RestoredFile, existing: os.stat_result | None
    ) -> None:
        """An unchanged file keeps its content; its owner, mode and times become the
        snapshot's (it has no other links: `decide` saw to that). One whose `lstat`
        already shows them is not even opened: a restore run again over a large tree
        costs one stat per file."""
        node = file.node
        if (
            existing is not None
            and not node.xattrs
            and existing.st_mtime_ns == node.mtime_ns
            and stat.S_IMODE(existing.st_mode) == stat.S_IMODE(node.mode)
            and (
                not self.writer.chown
                or (existing.st_uid, existing.st_gid) == self.writer.chown.ids(node)
            )
        ):
            file.done = True
            self.present.append(file)
            return
        try:
            fd = os.open(file.name, _READ_FLAGS, dir_fd=parent_fd)
            try:
                st = os.fstat(fd)
                if st.st_nlink != 1 or (existing is not None and st.st_ino != existing.st_ino):
                    # Swapped since the lstat (for a link to a file outside, perhaps).
                    raise OSError(errno.EEXIST, "replaced by something else while restoring")
                set_metadata(fd, file.node, chown=self.writer.chown)
            finally:
                os.close(fd)
        except OSError as exc:
            self.on_error(file.path, f"cannot set metadata: {exc.strerror or exc}")
        file.done = True
        self.present.append(file)

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
            set_metadata_at(parent_fd, node.name, node, chown=self.writer.chown)
        except OSError as exc:
            self.on_error(path, f"cannot set metadata: {exc.strerror or exc}")

    def _delete_extraneous(
        self, selected: SelectedDir, directory: RestoredDir, dir_fd: int
    ) -> None:
        """--delete: remove what this directory holds and the snapshot's listing of it
        lacks, where the patterns would have selected it; never following a symlink.
        The partial files of the files about to be restored here stay: an interrupted
        restore's blobs in them are reused."""
        resumable = {
            partial_name(e.name) for e in selected.entries if isinstance(e, Node) and e.type == FILE
        }
        names = selected.names()
        for text in sorted(os.listdir(dir_fd)):
            name = os.fsencode(text)
            if name in names or name in resumable:
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
                self.on_error(path, f"cannot delete: {exc.strerror or exc}")

    def match_target_entries(self, root: SelectedDir) -> None:
        """Try the excludes on the entries --delete would look at, read-only, so an
        exclude that only keeps a target entry from deletion counts as matching."""

        def walk(selected: SelectedDir, dir_fd: int) -> None:
            if selected.backed_up and not selected.damaged:
                names = selected.names()
                for text in os.listdir(dir_fd):
                    name = os.fsencode(text)
                    if name not in names:
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
