"""What the restorer does once the data is written: hard links to the completed files,
each directory's metadata after everything in it, --verify's read-back of restored files
against the snapshot's blob IDs, and the report of the files that lost blobs.
"""

from __future__ import annotations

import os
import stat
from concurrent.futures import ThreadPoolExecutor

from bbackup.errors import IntegrityError
from bbackup.ops.restore_compare import RestoreSource, blob_layout, mismatched_blobs
from bbackup.ops.restore_files import FileWriter, RestoredFile, partial_name
from bbackup.ops.restore_metadata import set_metadata
from bbackup.ops.restore_plan import RestorePlanner
from bbackup.ops.restore_report import PathEvent, RestoreSummary
from bbackup.ops.restore_target import OpenDirectories, clear_entry, join_path


class RestoreFinisher:
    """Links, directory metadata, --verify and the damage report; a base of `Restorer`
    (`restore`), which sets up the state declared here."""

    repo: RestoreSource
    summary: RestoreSummary
    workers: int
    _plan: RestorePlanner
    _directories: OpenDirectories
    _writer: FileWriter
    _lost: dict[bytes, tuple[str, str]]
    _damaged_files: list[RestoredFile]
    _damaged_links: list[tuple[bytes, bytes, RestoredFile]]
    _error: PathEvent

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
