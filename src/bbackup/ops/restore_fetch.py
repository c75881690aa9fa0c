"""The restorer's fetch of one window of the plan: every blob its files need grouped into
ranged reads pack by pack (the packs of its last files carried over to the next window),
each read decoded and written to every place its blobs go, what cannot be read noted as
lost, and the window settled once its reads are done.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from bbackup.errors import IntegrityError
from bbackup.ops.restore_compare import RestoreSource
from bbackup.ops.restore_files import FileWriter, RestoredFile
from bbackup.ops.restore_processes import Delegation
from bbackup.ops.restore_reads import NeededBlob, PackRead, plan_reads
from bbackup.repository import pack_object_name

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


class WindowFetcher:
    """Fetches and writes the plan's windows; a base of `Restorer` (`restore`), which sets
    up the state declared here and drives the windows."""

    repo: RestoreSource
    verify: bool
    read_size: int | None
    max_gap: int
    _writer: FileWriter
    #: Write workers for files of one blob (`restore_processes`), if any.
    _delegation: Delegation | None
    _lost: dict[bytes, tuple[str, str]]
    _carried: dict[bytes, NeededBlob]
    _damaged_files: list[RestoredFile]
    #: --verify of a window's files (`restore_finish`).
    _verify_files: Callable[[list[RestoredFile]], None]

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
        start = read.start
        view = memoryview(data)
        blobs, written = read.blobs, 0
        if self._delegation is not None:
            blobs, written = self._delegation.write_read(view, read)
        for blob in blobs:
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
