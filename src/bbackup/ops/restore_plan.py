"""The restore's plan: one walk over what `restore_select` selected and over the target,
making directories, removing what `--delete` removes, and handing each file and special entry
to `restore_plan_entries`, which decides what `--overwrite` does with what is there. With
--dry-run the target is only looked at and nothing is made.

The walk is a generator that stops whenever a window of files is planned, so the restorer
fetches those while the walk holds its place: memory follows the window, not the snapshot.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Generator

from bbackup.ops.posix_acl import has_default_acl
from bbackup.ops.restore_compare import Overwrite, RestoreSource, decide
from bbackup.ops.restore_files import FileWriter, RestoredFile, partial_name
from bbackup.ops.restore_plan_entries import EntryPlanner
from bbackup.ops.restore_report import PathEvent, RestoreProgress, RestoreSummary
from bbackup.ops.restore_select import PathFilter, SelectedDir
from bbackup.ops.restore_target import (
    DIRECTORY_FLAGS,
    OpenDirectories,
    RestoredDir,
    join_path,
    make_directory,
    remove_entry,
)
from bbackup.snapshot.model import FILE, SOCKET, SYMLINK, Node

#: The plan is handed over in windows of this many files (to write, or found unchanged)
#: or blobs, whichever comes first: a window of small files holds ~1 KiB each (node,
#: file and blob records), so two windows in hand (one fetched while the next is planned)
#: stay near 40 MiB at any snapshot size (docs/bench/session9.md, "Restore memory at many
#: files"). Packs that a window boundary splits cost no second read (`restore_fetch`
#: carries the last packs over).
WINDOW_FILES = 16_384
WINDOW_BLOBS = 65_536

#: A window's walk: yields each time a window is planned.
PlanWindows = Generator[None, None, None]


class RestorePlanner(EntryPlanner):
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
