"""The blob writer: blobs sealed into packs from many threads at once, memory bounded by
the store's pace, and an upload failure stopping every writer."""

from __future__ import annotations

import asyncio
import os
import random
import resource
import threading
import weakref

import pytest

from bbackup.compression import decompress
from bbackup.crypto.aead import BlobType, Cipher
from bbackup.crypto.keys import MasterKey
from bbackup.errors import BbackupError, Unreachable
from bbackup.repository import parse_pack, verify_pack_id
from bbackup.repository.config import MIN_PACK_SIZE
from bbackup.repository.index import Index
from bbackup.repository.pack import HUGE_PAGE, PackBuilder
from bbackup.repository.writer import BlobWriter
from bbackup.storage.memory import MemoryStorage
from map_memory import huge_pages_on_request

KiB = 1024
MiB = 1024 * KiB


class SlowStorage(MemoryStorage):
    """A store that takes a while per object; records packs in memory during each put."""

    def __init__(self, delay: float, fail_after: int | None = None) -> None:
        super().__init__()
        self.delay = delay
        self.fail_after = fail_after
        self.puts = 0
        self.mapped_during_puts: list[int] = []

    async def put(self, name, data, *, storage_class=None, if_absent=False):  # type: ignore[no-untyped-def]
        self.puts += 1
        if self.fail_after is not None and self.puts > self.fail_after:
            raise Unreachable("the store went away")
        self.mapped_during_puts.append(sum(1 for p in LIVE_PACKS if _mapped(p)))
        await asyncio.sleep(self.delay)
        await super().put(name, data, storage_class=storage_class, if_absent=if_absent)


LIVE_PACKS: weakref.WeakSet[PackBuilder] = weakref.WeakSet()


def _mapped(pack: PackBuilder) -> bool:
    try:
        return pack.view.nbytes > 0
    except ValueError:  # released: unmapped
        return False


@pytest.fixture(autouse=True)
def track_packs(monkeypatch: pytest.MonkeyPatch) -> None:
    init = PackBuilder.__init__

    def tracked(self: PackBuilder, *args: object, **kwargs: object) -> None:
        init(self, *args, **kwargs)  # type: ignore[arg-type]
        LIVE_PACKS.add(self)

    monkeypatch.setattr(PackBuilder, "__init__", tracked)


def contents(seed: int, count: int) -> list[bytes]:
    rnd = random.Random(seed)
    out = []
    for _ in range(count):
        size = rnd.randint(1, 20 * KiB)
        # Half compressible, half random; every tenth repeats a blob of another thread.
        out.append(
            b"text %d " % rnd.randint(0, 50) * (size // 8)
            if rnd.random() < 0.5
            else os.urandom(size)
        )
    return out


async def write_from_threads(
    storage: MemoryStorage, cipher: Cipher, threads: int, per_thread: int, upload_slots: int
) -> tuple[Index, dict[bytes, bytes], BlobWriter]:
    index = Index()
    writer = BlobWriter(
        storage, cipher, index, pack_size=64 * KiB, compression_level=3, upload_slots=upload_slots
    )
    shared = contents(999, 20)
    stored: dict[bytes, bytes] = {}
    lock = threading.Lock()

    def worker(seed: int) -> None:
        for data in contents(seed, per_thread) + shared:
            blob = writer.prepare(BlobType.DATA, data)
            writer.put(blob)
            with lock:
                stored[blob.blob_id] = data

    async def trees() -> None:  # tree blobs from the event loop meanwhile
        for i in range(50):
            data = b"tree %d " % i * 100
            blob = writer.prepare(BlobType.TREE, data)
            await writer.add(blob)
            stored[blob.blob_id] = data
            await asyncio.sleep(0)

    await asyncio.gather(*(asyncio.to_thread(worker, seed) for seed in range(threads)), trees())
    await writer.flush()
    return index, stored, writer


def test_blobs_put_from_many_threads_at_once_all_land_in_valid_packs() -> None:
    cipher = Cipher(MasterKey.generate())
    storage = MemoryStorage()

    index, stored, writer = asyncio.run(write_from_threads(storage, cipher, 4, 150, 2))

    packs = {name: data for name, (data, _, _) in storage.objects.items()}
    assert any(n.startswith("data/") for n in packs) and any(n.startswith("tree/") for n in packs)
    for name, data in packs.items():
        if name.startswith(("data/", "tree/")):
            verify_pack_id(name.rsplit("/", 1)[1], data)
            assert parse_pack(cipher, data)
    assert len(stored) == writer.stats.blobs_new
    for blob_id, data in stored.items():
        entry = index.lookup(blob_id)
        pack = packs[f"{entry.blob_type.directory}/{entry.pack_id[:2]}/{entry.pack_id}"]
        sealed = pack[entry.offset : entry.offset + entry.length]
        payload = cipher.open_blob(entry.blob_type, blob_id, sealed)
        assert decompress(payload, entry.raw_length) == data


def test_a_slow_store_holds_back_the_writers_instead_of_filling_memory() -> None:
    cipher = Cipher(MasterKey.generate())
    storage = SlowStorage(delay=0.02)

    asyncio.run(write_from_threads(storage, cipher, 4, 150, upload_slots=2))

    assert storage.puts > 20
    # upload_slots + 1 packs at most: two uploading, one being filled (or the tree pack).
    assert max(storage.mapped_during_puts) <= 3


def test_an_upload_failure_stops_every_writer_with_that_error() -> None:
    cipher = Cipher(MasterKey.generate())
    storage = SlowStorage(delay=0.001, fail_after=3)

    with pytest.raises(Unreachable, match="went away"):
        asyncio.run(write_from_threads(storage, cipher, 4, 300, upload_slots=2))


def test_an_abort_stops_writers_waiting_for_the_store_and_none_is_left_hanging() -> None:
    cipher = Cipher(MasterKey.generate())
    storage = SlowStorage(delay=0.05)

    async def run() -> list[BaseException | None]:
        writer = BlobWriter(
            storage, cipher, Index(), pack_size=64 * KiB, compression_level=3, upload_slots=1
        )

        def worker(seed: int) -> None:
            for data in contents(seed, 500):
                writer.put(writer.prepare(BlobType.DATA, data))

        threads = [asyncio.ensure_future(asyncio.to_thread(worker, s)) for s in range(4)]
        await asyncio.sleep(0.2)  # the writers are now waiting for the slow store
        await writer.abort()
        results = await asyncio.wait_for(asyncio.gather(*threads, return_exceptions=True), 20)
        return [r if isinstance(r, BaseException) else None for r in results]

    results = asyncio.run(run())

    assert all(isinstance(r, BbackupError) and "aborted" in str(r) for r in results), results


class MeasuringStore(MemoryStorage):
    """A slow store, one put at a time, that keeps only the names and sizes of what it is
    given, noting at each put how far the process's resident memory has grown since
    `start`."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay
        self.sizes: dict[str, int] = {}
        self.baseline = 0
        self.peak_growth = 0
        self._one_at_a_time = asyncio.Lock()

    def start(self) -> None:
        self.baseline = resident_bytes()

    async def put(self, name, data, *, storage_class=None, if_absent=False):  # type: ignore[no-untyped-def]
        async with self._one_at_a_time:
            self.peak_growth = max(self.peak_growth, resident_bytes() - self.baseline)
            self.sizes[name] = len(data)
            await asyncio.sleep(self.delay)


def resident_bytes() -> int:
    """This process's resident set size (Linux)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * KiB
    raise AssertionError("no VmRSS in /proc/self/status")


def test_memory_stays_that_of_a_few_packs_however_many_are_written() -> None:
    """A stored pack's memory is given back before its map is used again, so the writer
    holds the packs being filled or stored, never a spare pack's pages on top; where the
    kernel has huge pages, filling a pack costs a handful of page faults."""
    pack_size, packs, slots = MIN_PACK_SIZE, 24, 2
    cipher = Cipher(MasterKey.generate())
    storage = MeasuringStore(delay=0.005)  # a pack stored while the next one fills

    async def run() -> int:
        writer = BlobWriter(
            storage,
            cipher,
            Index(),
            pack_size=pack_size,
            compression_level=3,
            upload_slots=slots,
        )
        # Random blobs (stored as they are), all prepared before measuring: what is
        # measured is the writer's own memory, not the data it is given.
        blobs = [writer.prepare(BlobType.DATA, os.urandom(64 * KiB)) for _ in range(64 * packs)]

        def worker() -> int:
            faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            for blob in blobs:
                writer.put(blob)
            return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults

        storage.start()
        faults = await asyncio.to_thread(worker)
        await writer.flush()
        return faults

    faults = asyncio.run(run())

    assert len(storage.sizes) >= packs
    # The pack being filled and the one being stored, each up to a huge page past its
    # size (the header), not the 96 MiB written, and not the pages of kept maps on top of
    # them (20 MiB here when they kept them).
    assert storage.peak_growth <= 2 * (pack_size + HUGE_PAGE) + MiB, storage.peak_growth
    if huge_pages_on_request():
        # 2 MiB pages: a 4 MiB pack is a few faults; 4 KiB pages would be over 1,000.
        assert faults <= 16 * packs, faults


class GatedStorage(MemoryStorage):
    """A store whose first pack upload waits until the test opens the gate."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.first_put_started = threading.Event()

    async def put(self, name, data, *, storage_class=None, if_absent=False):  # type: ignore[no-untyped-def]
        if name.startswith("data/") and not self.first_put_started.is_set():
            self.first_put_started.set()
            await asyncio.to_thread(self.gate.wait)
        await super().put(name, data, storage_class=storage_class, if_absent=if_absent)


def test_a_writer_waiting_for_a_pack_slot_uses_a_pack_another_writer_opened_meanwhile() -> None:
    """Found with `backup --connections 1` (two pack slots): the open tree pack holds one
    slot, a full data pack uploading the other, and two readers wait for a new data pack.
    The upload frees one slot; the reader that gets it opens a pack with room for both,
    and the other must use that pack, not wait for a slot nobody will free until the
    backup ends (the tree pack is closed by `flush`, which waits for the readers)."""
    cipher = Cipher(MasterKey.generate())
    storage = GatedStorage()

    async def run() -> Index:
        index = Index()
        writer = BlobWriter(
            storage, cipher, index, pack_size=64 * KiB, compression_level=3, upload_slots=1
        )
        await writer.add(writer.prepare(BlobType.TREE, b"a tree"))  # slot 1, stays open
        full = writer.prepare(BlobType.DATA, os.urandom(64 * KiB))
        await asyncio.to_thread(writer.put, full)  # slot 2: a full pack, upload gated
        await asyncio.to_thread(storage.first_put_started.wait)
        blobs = [writer.prepare(BlobType.DATA, os.urandom(KiB)) for _ in range(2)]
        readers = [asyncio.ensure_future(asyncio.to_thread(writer.put, b)) for b in blobs]
        await asyncio.sleep(0.2)  # both readers are now waiting for a slot
        storage.gate.set()
        _, waiting = await asyncio.wait(readers, timeout=10)
        if waiting:  # stuck: free them (their slots are in the open packs) and fail
            await writer.abort()
            await asyncio.gather(*readers, return_exceptions=True)
            pytest.fail("a reader waited for a pack slot while an open pack had room")
        await writer.flush()
        for blob in [full, *blobs]:
            assert blob.blob_id in index
        return index

    asyncio.run(run())
