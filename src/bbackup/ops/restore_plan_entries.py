"""The plan's decisions about one file or special entry against what the target holds at
its path: compare content, reuse what an interrupted restore left in a partial file, give
an unchanged file the snapshot's metadata in place, make empty files and special entries,
and note the files whose blobs are to be fetched.
"""

from __future__ import annotations

import errno
import os
import stat

from bbackup.errors import IntegrityError
from bbackup.ops.restore_compare import Action, RestoreSource, blob_layout, mismatched_blobs
from bbackup.ops.restore_files import CREATE_FLAGS, FileWriter, RestoredFile, creation_mode
from bbackup.ops.restore_metadata import set_metadata, set_metadata_at
from bbackup.ops.restore_report import PathEvent, RestoreProgress, RestoreSummary
from bbackup.ops.restore_target import (
    SPECIAL_TYPES,
    RestoredDir,
    clear_entry,
    join_path,
    make_special,
)
from bbackup.snapshot.model import Node

#: Opens a file already in the target to read it: never through a symlink, never
#: blocking on a FIFO swapped in since its lstat.
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class EntryPlanner:
    """Plans single files and special entries; a base of `RestorePlanner` (`restore_plan`),
    which sets up the state declared here and walks the directories."""

    repo: RestoreSource
    dry_run: bool
    writer: FileWriter
    summary: RestoreSummary
    progress: RestoreProgress
    on_error: PathEvent
    on_plan: PathEvent | None
    files: list[RestoredFile]
    present: list[RestoredFile]
    links: list[tuple[RestoredFile, RestoredDir, bytes]]
    _hardlinks: dict[tuple[int, int], RestoredFile]
    _window_blobs: int

    def _planned(self, path: bytes, action: str) -> None:
        if self.dry_run and self.on_plan is not None:
            self.on_plan(path, action)

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
