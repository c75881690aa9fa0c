"""What a restore does with what is already in its target (`--overwrite`), and the check of a
file's content against the snapshot's blob IDs that both `--overwrite if-changed` and
`--verify` use: each blob-sized piece of the file is hashed with the repository's keyed
blob hash and compared with the ID the snapshot lists for it. `RestoreSource` is the role a
restore reads through: blobs, and that keyed hash.
"""

from __future__ import annotations

import enum
import os
import stat
from collections.abc import Callable, Sequence
from typing import Protocol

from bbackup.repository import BlobLoader, IndexEntry
from bbackup.snapshot.model import BLOCKDEV, CHARDEV, FIFO, FILE, SYMLINK, Node

#: The keyed blob hash of a plaintext (`Repository.blob_id`).
BlobHasher = Callable[[bytes], bytes]


class RestoreSource(BlobLoader, Protocol):
    """What a restore reads: blobs, and the keyed hash that tells whether a file already
    in the target (or one just written, for --verify) holds them."""

    def blob_id(self, data: bytes | memoryview) -> bytes: ...


def blob_layout(lookup: Callable[[bytes], IndexEntry], node: Node) -> list[tuple[bytes, int]]:
    """(blob ID, plaintext length) of each blob of a file's content, in order;
    IntegrityError if the index lacks one."""
    return [(blob_id, lookup(blob_id).raw_length) for blob_id in node.content]


class Overwrite(enum.StrEnum):
    """--overwrite: what to do with an entry already at a path the restore writes."""

    #: Replace every entry, identical or not (everything is downloaded again).
    ALWAYS = "always"
    #: Replace only what differs from the snapshot; the default, so a restore run again
    #: after an interruption downloads only what it had not finished.
    IF_CHANGED = "if-changed"
    #: Replace only entries older (by mtime) than the snapshot's.
    IF_NEWER = "if-newer"
    #: Never replace an existing entry.
    NEVER = "never"


class Action(enum.Enum):
    """What the restore does at one path."""

    #: Nothing is there: create it.
    CREATE = "create"
    #: Something else is there: replace it.
    REPLACE = "replace"
    #: A regular file of the right size but another mtime: its content decides.
    COMPARE = "compare"
    #: It is already what the snapshot has: only its metadata is brought in line.
    UNCHANGED = "unchanged"
    #: It is left as it is, because --overwrite says so.
    KEEP = "keep"

    @property
    def writes(self) -> bool:
        return self in (Action.CREATE, Action.REPLACE)


def decide(
    mode: Overwrite, node: Node, existing: os.stat_result | None, link_target: bytes | None = None
) -> Action:
    """The action for `node` given what `lstat` found at its path (`link_target`: what that
    symlink points to, if it is one). A regular file with other hard links is never
    "unchanged": bringing its metadata in line would change the other names too, and a
    file the snapshot hard-links is always written so that its links are made anew."""
    if existing is None:
        return Action.CREATE
    if mode is Overwrite.ALWAYS:
        return Action.REPLACE
    if mode is Overwrite.NEVER:
        return Action.KEEP
    if mode is Overwrite.IF_NEWER:
        return Action.REPLACE if node.mtime_ns > existing.st_mtime_ns else Action.KEEP
    kind = stat.S_IFMT(existing.st_mode)
    if node.type == FILE:
        if kind != stat.S_IFREG or existing.st_nlink > 1 or node.nlink > 1:
            return Action.REPLACE
        if existing.st_size != node.size:
            return Action.REPLACE
        return Action.UNCHANGED if existing.st_mtime_ns == node.mtime_ns else Action.COMPARE
    if node.type == SYMLINK:
        same = kind == stat.S_IFLNK and link_target == node.link_target
    elif node.type == FIFO:
        same = kind == stat.S_IFIFO
    elif node.type in (CHARDEV, BLOCKDEV):
        wanted = stat.S_IFCHR if node.type == CHARDEV else stat.S_IFBLK
        same = kind == wanted and existing.st_rdev == node.rdev
    else:
        same = False
    return Action.UNCHANGED if same else Action.REPLACE


def mismatched_blobs(
    fd: int, blobs: Sequence[tuple[bytes, int]], blob_id: BlobHasher
) -> tuple[list[int], int]:
    """Which blobs of a file's content list (ID, plaintext length) the file at `fd` does
    not hold at their places, by index, and the bytes read. Bytes past the last blob make
    the file differ too: they count as a mismatch of index len(blobs)."""
    mismatched: list[int] = []
    offset = 0
    for i, (expected, length) in enumerate(blobs):
        piece = _read_at(fd, length, offset)
        offset += len(piece)
        if len(piece) != length or blob_id(piece) != expected:
            mismatched.append(i)
    if os.fstat(fd).st_size != offset:
        mismatched.append(len(blobs))
    return mismatched, offset


def _read_at(fd: int, length: int, offset: int) -> bytes:
    """Up to `length` bytes from `offset` (fewer only at the end of the file)."""
    parts: list[bytes] = []
    while length > 0:
        piece = os.pread(fd, length, offset)
        if not piece:
            break
        parts.append(piece)
        length -= len(piece)
        offset += len(piece)
    return b"".join(parts)
