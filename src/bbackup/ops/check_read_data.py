"""Check's --read-data pass: which packs to read (ReadDataSubset), and each one read
once, its SHA-256 name verified, its header compared with the index and every blob it
holds decrypted and checked against its ID, spread over a pool of workers. The roles check
reads through (CheckedRepository) live here, since this pass is the one that needs them all."""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from bbackup.errors import BbackupError, IntegrityError, NotFound, UsageError
from bbackup.ops.check_report import REPAIR_PACKS_ADVICE, CheckReport
from bbackup.repository import (
    BlobLoader,
    DocumentStore,
    IndexEntry,
    PackedBlob,
    PackInfo,
    PackInventory,
    pack_object_name,
    verify_pack_id,
)
from bbackup.storage import StorageProfile

#: The blobs of a pack are verified in batches of about this many bytes, so that every
#: worker has work while another hashes the whole pack.
BATCH_BYTES = 2 * 1024 * 1024


class CheckedRepository(PackInventory, BlobLoader, DocumentStore, Protocol):
    """What check reads: the stored packs and the index, blobs, and snapshot documents,
    and what kind of store holds them (how many packs to read at once)."""

    @property
    def profile(self) -> StorageProfile: ...


@dataclass(frozen=True, slots=True)
class ReadDataSubset:
    """Which packs to read: all, a fraction ("10%"), or group n of m ("2/5")."""

    fraction: float = 1.0
    group: tuple[int, int] | None = None

    @classmethod
    def parse(cls, text: str) -> ReadDataSubset:
        text = text.strip()
        if m := re.fullmatch(r"(\d+(?:\.\d+)?)%", text):
            value = float(m.group(1))
            if not 0 < value <= 100:
                raise UsageError(f"--read-data-subset {text}: percentage must be in (0, 100]")
            return cls(fraction=value / 100)
        if m := re.fullmatch(r"(\d+)/(\d+)", text):
            n, total = int(m.group(1)), int(m.group(2))
            if not 1 <= n <= total:
                raise UsageError(f"--read-data-subset {text}: need 1 <= n <= m in n/m")
            return cls(group=(n, total))
        raise UsageError(f"--read-data-subset {text!r}: use a percentage (10%) or n/m (1/5)")

    def select(self, pack_ids: list[str]) -> list[str]:
        ordered = sorted(pack_ids)
        if self.group is not None:
            n, total = self.group
            return [p for p in ordered if int(p[:8], 16) % total == n - 1]
        if self.fraction >= 1.0:
            return ordered
        count = max(1, round(len(ordered) * self.fraction)) if ordered else 0
        return sorted(random.sample(ordered, count))


async def _read_packs(
    repo: CheckedRepository,
    report: CheckReport,
    subset: ReadDataSubset,
    workers: int,
    packs_in_flight: int,
    on_progress: Callable[[str], None] | None,
    damaged: dict[str, frozenset[bytes]],
    read: set[str],
    before_reads: Callable[[list[str]], Awaitable[object]] | None = None,
) -> None:
    """Read and verify the packs `subset` selects; add each damaged one to `damaged`
    (its failed blobs come from `found_damage`) and each one read to `read`."""
    packs = repo.index.all_packs()
    selected = subset.select(list(packs))
    if before_reads is not None:
        await before_reads([pack_object_name(packs[p].blob_type, p) for p in selected])
    pending = iter(selected)
    pool = ThreadPoolExecutor(workers, thread_name_prefix="bb-check")

    async def reader() -> None:
        # Each reader holds one pack from its download until its last blob is verified,
        # so memory stays within packs_in_flight × pack size however slow verifying is.
        for pack_id in pending:  # shared: each pack goes to exactly one reader
            pack = packs[pack_id]
            name = pack_object_name(pack.blob_type, pack_id)
            try:
                data = await repo.read_pack(name)
            except NotFound:
                continue  # already reported by the structure check
            except BbackupError as exc:
                report.errors.append(f"{name}: cannot read: {exc}")
                continue
            report.bytes_read += len(data)
            problems = await _verify_pack(repo, pool, pack, data)
            del data
            # Each line says what heals it: repair packs keeps the pack's intact blobs and
            # drops the damaged ones, so the next backup uploads them again.
            report.errors.extend(f"{name}: {p}; {REPAIR_PACKS_ADVICE}" for p in problems)
            if problems:
                damaged.setdefault(pack_id, frozenset())
            read.add(pack_id)
            report.packs_read += 1
            if on_progress is not None:
                on_progress(name)

    try:
        await asyncio.gather(*(reader() for _ in range(max(1, packs_in_flight))))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


async def _verify_pack(
    repo: CheckedRepository, pool: ThreadPoolExecutor, pack: PackInfo, data: bytes
) -> list[str]:
    """Everything wrong with one pack held in memory: its SHA-256 name, its header against
    the index, and every blob it holds. The blobs are verified in batches spread over the
    pool while the pack's hash runs, so one pack keeps every worker busy."""
    loop = asyncio.get_running_loop()
    shared = _SharedPack(data)
    try:
        hashed = loop.run_in_executor(pool, _pack_id_problems, pack.pack_id, shared)
        try:
            blobs = repo.parse_pack_header(data)
        except IntegrityError as exc:
            return [*await hashed, f"header: {exc}"]
        decoded = [
            loop.run_in_executor(pool, _blob_problems, repo, pack.pack_id, shared, batch)
            for batch in _batches(blobs, BATCH_BYTES)
        ]
        results = await asyncio.gather(hashed, *decoded)
    finally:
        shared.data = None
    problems = results[0] + compare_header_with_index(pack, blobs)
    for batch_problems in results[1:]:
        problems.extend(batch_problems)
    return problems


class _SharedPack:
    """The bytes of the pack being verified, as its jobs in the pool reach them.

    A pool thread keeps a job's arguments for a moment after the job has returned, so the
    bytes are dropped from here once the pack is verified; were they the arguments, the
    next pack could be read while a thread still kept this one alive.
    """

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data: bytes | None = data


def _pack_id_problems(pack_id: str, shared: _SharedPack) -> list[str]:
    data = shared.data
    if data is None:
        return []  # the check was abandoned
    try:
        verify_pack_id(pack_id, data)
    except IntegrityError as exc:
        return [str(exc).split(": ", 1)[-1]]
    return []


def _blob_problems(
    loader: BlobLoader, pack_id: str, shared: _SharedPack, blobs: list[PackedBlob]
) -> list[str]:
    data = shared.data
    if data is None:
        return []  # the check was abandoned
    view = memoryview(data)
    problems: list[str] = []
    for blob in blobs:
        entry = IndexEntry(pack_id, blob.blob_type, blob.offset, blob.length, blob.raw_length)
        try:
            loader.decode_blob(blob.blob_id, entry, view[blob.offset : blob.offset + blob.length])
        except IntegrityError as exc:
            problems.append(str(exc))
    return problems


def _batches(blobs: list[PackedBlob], batch_bytes: int) -> Iterator[list[PackedBlob]]:
    batch: list[PackedBlob] = []
    size = 0
    for blob in blobs:
        batch.append(blob)
        size += blob.length
        if size >= batch_bytes:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def compare_header_with_index(pack: PackInfo, header: list[PackedBlob]) -> list[str]:
    """Where a pack's header and the index disagree about the blobs the pack holds."""
    indexed = {blob_id: (offset, length, raw) for blob_id, offset, length, raw in pack.blobs}
    problems: list[str] = []
    for blob in header:
        short = blob.blob_id.hex()[:16]
        where = indexed.pop(blob.blob_id, None)
        if where is None:
            problems.append(f"blob {short} is in the pack but not in the index")
        elif blob.blob_type != pack.blob_type:
            problems.append(
                f"blob {short} is a {blob.blob_type.name.lower()} blob in a "
                f"{pack.blob_type.name.lower()} pack"
            )
        elif where != (blob.offset, blob.length, blob.raw_length):
            problems.append(f"blob {short}: the index and the pack header place it differently")
    problems.extend(
        f"blob {blob_id.hex()[:16]} is in the index but not in the pack" for blob_id in indexed
    )
    return problems
