"""Archive writers for `bbackup dump`: snapshot nodes as a streamed tar (POSIX pax: ns
mtimes, owners by number and name, symlinks, hard links, devices, FIFOs, xattrs,
non-UTF-8 names) or zip (Info-ZIP Unix extras: mode, uid/gid, mtime; symlinks), written
front to back to a stream that need not be seekable.

The writers are synchronous: they run in one worker thread and pull file content from
an iterator that blocks until the blobs arrive.
"""

from __future__ import annotations

import os
import stat
import struct
import tarfile
import time
import zipfile
from collections.abc import Callable, Iterable
from typing import BinaryIO, Protocol

from bbackup.snapshot.model import BLOCKDEV, CHARDEV, DIR, FIFO, FILE, SYMLINK, Node

#: The archive formats `dump --archive` writes.
ARCHIVE_FORMATS = ("tar", "zip")

_TAR_TYPES = {
    FILE: tarfile.REGTYPE,
    DIR: tarfile.DIRTYPE,
    SYMLINK: tarfile.SYMTYPE,
    CHARDEV: tarfile.CHRTYPE,
    BLOCKDEV: tarfile.BLKTYPE,
    FIFO: tarfile.FIFOTYPE,
}
_ZIP_TYPES = {FILE: stat.S_IFREG, DIR: stat.S_IFDIR, SYMLINK: stat.S_IFLNK}


class ArchiveWriter(Protocol):
    """Writes one archive to a stream, entry by entry, parents before children."""

    def add(
        self,
        path: bytes,
        node: Node,
        content: Iterable[bytes],
        size: int,
        link_to: bytes | None = None,
    ) -> bool:
        """Add `node` at `path` (absolute in the snapshot); `content` yields a regular
        file's `size` bytes, unless `link_to` names the path of an earlier entry this
        file is a hard link of (tar only; then `content` is not read). False if this
        format cannot hold the entry (nothing written)."""
        ...

    def close(self) -> None:
        """End the archive, after every entry was written."""
        ...

    def abandon(self) -> None:
        """Give up after a failure without ending the archive: a failed dump leaves a
        truncated archive that every reader rejects, never a short one that looks whole."""
        ...


def member_name(path: bytes) -> str:
    """The archive name of a snapshot path: relative (tar's convention), so that extracting
    under a directory puts files where `restore --target` would."""
    return os.fsdecode(path.lstrip(b"/"))


class TarWriter:
    """A streamed POSIX pax tar, as `tar -c --format=pax --xattrs` would write it.

    tarfile makes each header (`TarInfo.tobuf`); the framing around the data (padding to
    512 bytes, the end-of-archive blocks) is written here, so each blob goes to the
    stream whole instead of through `TarFile.addfile`'s 16 KiB read-and-copy loop."""

    RECORD = tarfile.RECORDSIZE

    def __init__(self, sink: BinaryIO, warn: Callable[[bytes, str], None]) -> None:
        self.sink = sink
        self.warn = warn
        self.offset = 0

    def add(
        self,
        path: bytes,
        node: Node,
        content: Iterable[bytes],
        size: int,
        link_to: bytes | None = None,
    ) -> bool:
        kind = _TAR_TYPES.get(node.type)
        if kind is None:
            self.warn(path, f"a {node.type} cannot be stored in an archive; left out")
            return False
        name = member_name(path)
        info = tarfile.TarInfo(name)
        info.type = kind
        info.mode = stat.S_IMODE(node.mode)
        info.uid, info.gid, info.uname, info.gname = node.uid, node.gid, node.user, node.group
        info.mtime = node.mtime_ns // 1_000_000_000
        info.pax_headers = {"mtime": _pax_time(node.mtime_ns)}
        for key, value in node.xattrs:
            try:
                keyword = "SCHILY.xattr." + key.decode()
            except UnicodeDecodeError:
                self.warn(path, f"extended attribute {key!r} has a name tar cannot carry")
                continue
            info.pax_headers[keyword] = value.decode("utf-8", "surrogateescape")
        if link_to is not None:
            info.type, info.linkname = tarfile.LNKTYPE, member_name(link_to)
        elif node.type == FILE:
            info.size = size
        elif node.type == SYMLINK:
            info.linkname = os.fsdecode(node.link_target)
        elif node.type in (CHARDEV, BLOCKDEV):
            info.devmajor, info.devminor = os.major(node.rdev), os.minor(node.rdev)
        self._write(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
        if info.type == tarfile.REGTYPE:
            written = 0
            for chunk in content:
                self._write(chunk)
                written += len(chunk)
            if written != size:  # the caller's sizes come from the index: a bug, not damage
                raise RuntimeError(f"{name}: wrote {written} bytes of {size}")
            self._write(bytes(-size % tarfile.BLOCKSIZE))
        return True

    def _write(self, data: bytes | memoryview) -> None:
        self.sink.write(data)
        self.offset += len(data)

    def close(self) -> None:
        end = 2 * tarfile.BLOCKSIZE
        self._write(bytes(end + (-(self.offset + end) % self.RECORD)))
        self.sink.flush()

    def abandon(self) -> None:
        """Nothing to do: the end-of-archive blocks are simply never written."""


class ZipWriter:
    """A zip written front to back (data descriptors where the stream cannot seek).

    Zip has no hard links, FIFOs or device nodes: a hard link is stored as another copy,
    the others are left out with a warning, as is a name whose backslash-separated parts
    hold `..` (Windows extractors split names on backslashes). Names that are not UTF-8
    are stored with their bytes escaped (`\\xNN`), as zip cannot carry them; tar can.
    """

    def __init__(self, sink: BinaryIO, warn: Callable[[bytes, str], None]) -> None:
        self.zip = zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True)
        self.warn = warn

    def add(
        self,
        path: bytes,
        node: Node,
        content: Iterable[bytes],
        size: int,
        link_to: bytes | None = None,
    ) -> bool:
        kind = _ZIP_TYPES.get(node.type)
        if kind is None:
            self.warn(path, f"a {node.type} cannot be stored in a zip archive; left out")
            return False
        name = path.lstrip(b"/").decode("utf-8", "backslashreplace")
        if ".." in name.replace("\\", "/").split("/"):
            # A Unix name may hold `\`; Windows extractors split on it: `..\x` would
            # lead them out of the directory they extract into.
            self.warn(path, "a name with `..` between backslashes is unsafe in a zip; left out")
            return False
        if node.type == DIR:
            name += "/"
        info = zipfile.ZipInfo(name, _dos_time(node.mtime_ns))
        info.create_system = 3  # Unix: external_attr holds st_mode
        info.external_attr = (kind | stat.S_IMODE(node.mode)) << 16
        info.extra = _unix_extras(node)
        if node.type == DIR:
            info.external_attr |= 0x10  # MS-DOS directory flag
            self.zip.writestr(info, b"")
        elif node.type == SYMLINK:
            info.compress_type = zipfile.ZIP_STORED
            self.zip.writestr(info, node.link_target)
        else:
            info.compress_type = zipfile.ZIP_DEFLATED
            info.file_size = size
            with self.zip.open(info, "w", force_zip64=size > zipfile.ZIP64_LIMIT // 2) as member:
                for chunk in content:
                    member.write(chunk)
        return True

    def close(self) -> None:
        fp = self.zip.fp
        self.zip.close()
        if fp is not None:
            fp.flush()

    def abandon(self) -> None:
        # ZipFile writes its central directory when closed, even by the garbage collector:
        # without a file to write to, it writes nothing, and the zip stays unreadable.
        self.zip.fp = None


def _pax_time(ns: int) -> str:
    """A time in ns as pax writes it: decimal seconds with all nine digits of fraction."""
    seconds, nanos = divmod(abs(ns), 1_000_000_000)
    return f"{'-' if ns < 0 else ''}{seconds}.{nanos:09d}"


def _dos_time(mtime_ns: int) -> tuple[int, int, int, int, int, int]:
    """The zip header's local time, clamped to what MS-DOS dates hold (1980-2107); the
    exact time is in the extended-timestamp extra."""
    year, month, day, hour, minute, second = time.localtime(mtime_ns / 1e9)[:6]
    if year < 1980:
        return (1980, 1, 1, 0, 0, 0)
    if year > 2107:
        return (2107, 12, 31, 23, 59, 58)
    return (year, month, day, hour, minute, second)


def _unix_extras(node: Node) -> bytes:
    """Info-ZIP extras: extended timestamp (0x5455, mtime in UTC seconds) and Unix owner
    (0x7875, uid and gid), which `unzip` applies (the owner as root)."""
    mtime = max(min(node.mtime_ns // 1_000_000_000, 2**31 - 1), -(2**31))
    timestamp = struct.pack("<HHBi", 0x5455, 5, 1, mtime)
    uid, gid = node.uid & 0xFFFFFFFF, node.gid & 0xFFFFFFFF
    owner = struct.pack("<HHBBIBI", 0x7875, 11, 1, 4, uid, 4, gid)
    return timestamp + owner


def archive_writer(
    archive: str, sink: BinaryIO, warn: Callable[[bytes, str], None]
) -> ArchiveWriter:
    """The writer of `archive` ("tar" or "zip") on `sink`."""
    if archive == "zip":
        return ZipWriter(sink, warn)
    return TarWriter(sink, warn)
