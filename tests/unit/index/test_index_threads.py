"""The index under threads: lookups run while packs are added, several threads may add
packs at once, and an interpreter without the GIL gets an index whose reads lock."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable

import pytest

import bbackup.repository.index as index_module
from bbackup.crypto.aead import BlobType
from bbackup.repository.index import Index, PackInfo


def blob(n: int) -> bytes:
    return n.to_bytes(8, "big").ljust(32, b"\xee")


@pytest.fixture(params=["with-gil", "without-gil"])
def new_index(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Callable[[], Index]:
    """Index() as this interpreter builds it, and as a free-threaded one would."""
    monkeypatch.setattr(index_module, "_GIL_ENABLED", request.param == "with-gil")
    return Index


def run_threads(targets: list[Callable[[], None]]) -> list[BaseException]:
    errors: list[BaseException] = []

    def guarded(target: Callable[[], None]) -> None:
        try:
            target()
        except BaseException as exc:  # reported to the test
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(t,)) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_an_interpreter_without_the_gil_gets_locked_reads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(index_module, "_GIL_ENABLED", False)
    index = Index()
    assert isinstance(index, index_module._IndexWithLockedReads)
    monkeypatch.setattr(index_module, "_GIL_ENABLED", True)
    assert type(Index()) is Index


def test_lookups_from_other_threads_while_packs_are_added(
    new_index: Callable[[], Index],
) -> None:
    index = new_index()
    ids = [blob(n) for n in range(20_000)]
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            for b in ids[::97]:
                entry = index.get(b)
                if entry is not None and entry.pack_id != f"{ids.index(b) // 100:064x}":
                    raise AssertionError(f"wrong pack for {b.hex()}")
                _ = b in index

    def writer() -> None:
        try:
            for p in range(200):
                chunk = ids[p * 100 : (p + 1) * 100]
                index.add_pack(
                    PackInfo(
                        f"{p:064x}", BlobType.DATA, 1, [(b, i, 1, 1) for i, b in enumerate(chunk)]
                    )
                )
        finally:
            stop.set()

    assert run_threads([reader, reader, writer]) == []
    assert len(index) == len(ids) and all(b in index for b in ids)


def test_packs_added_from_several_threads_are_all_indexed(
    new_index: Callable[[], Index],
) -> None:
    """Writers in four threads, with overlapping blobs, and a reader: nothing is lost and
    every blob points into a pack that holds it."""
    index = new_index()
    pool = [blob(n) for n in range(3_000)]
    packs: dict[str, PackInfo] = {}
    for w in range(4):
        rng = random.Random(w)
        for p in range(60):
            chosen = rng.sample(pool, 40)
            pack_id = f"{w:02x}{p:062x}"
            packs[pack_id] = PackInfo(
                pack_id, BlobType.DATA, 10_000, [(b, 100 * i, 90, 95) for i, b in enumerate(chosen)]
            )
    by_writer = [[p for p in packs.values() if p.pack_id.startswith(f"{w:02x}")] for w in range(4)]
    done = threading.Event()

    def writer(mine: list[PackInfo]) -> Callable[[], None]:
        def add() -> None:
            for info in mine:
                index.add_pack(info)

        return add

    def reader() -> None:
        while not done.is_set():
            for b in pool[::31]:
                entry = index.get(b)
                if entry is not None and b not in {x[0] for x in packs[entry.pack_id].blobs}:
                    raise AssertionError(f"{b.hex()} points to a pack without it")

    errors: list[BaseException] = []

    def reading() -> None:
        errors.extend(run_threads([reader]))

    reading_thread = threading.Thread(target=reading)
    reading_thread.start()
    try:
        errors.extend(run_threads([writer(mine) for mine in by_writer]))
    finally:
        done.set()
        reading_thread.join()
    assert errors == []

    assert dict(index.packs) == packs
    stored = {b for info in packs.values() for b, *_ in info.blobs}
    assert len(index) == len(stored) and set(index.blob_ids()) == stored
    for b, entry in index.items():
        where = dict((x[0], x[1:]) for x in packs[entry.pack_id].blobs)
        assert where[b] == (entry.offset, entry.length, entry.raw_length)
