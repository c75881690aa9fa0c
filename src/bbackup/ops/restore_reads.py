"""How restore reads a repository's packs: the blobs it needs from one pack grouped into a
few ranged reads (gaps skipped up to a limit, reads capped in size), the read settings each
kind of store gets, and the bytes of reads held at once. Dump, drill and copy's source read
packs the same way.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from bbackup.ops.restore_files import RestoredFile
from bbackup.repository import IndexEntry, Repository
from bbackup.repository.config import RepositoryConfig

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
