"""Synthetic benchmark of the in-memory index (bbackup.repository.index.Index).

    python scripts/bench_index.py [--blobs 5000000] [--per-pack 16] [--lookups 1000000]
                                  [--impl ours|borghash|borghash-rows|both|all]
                                  [--tracemalloc] [--load-segments] [--json FILE]

--impl borghash measures PyPI's `borghash` (a Cython hash table for random fixed-size
keys, from the borg developers) in the place of our table. `BorghashIndex` maps each blob
ID to the same 16 bytes of numbers our rows hold (pack number and type, offset, length,
raw length) and keeps the pack IDs in a list: the best case for borghash, as it keeps
only the first copy of each blob and no per-pack blob lists, which the real Index must
keep (prune and check list a pack's blobs). --impl borghash-rows (`BorghashRowsIndex`)
is borghash as our Index would use it: our rows, every copy, and a borghash table from
blob ID to row. borghash publishes no wheels (only an sdist), so it is not a dependency:
to run these, build it aside, e.g. `pip install --no-deps --target /tmp/borghash-site
borghash` (needs a C compiler), then `PYTHONPATH=/tmp/borghash-site:src`. --impl both
(ours, borghash) and --impl all (the three) run each in its own process, so that one's
memory does not hide another's, and print them side by side.

* memory per blob: growth of the process's resident set size (/proc/self/statm) from
  before the first ID is generated to after the index is built, divided by the number of
  blobs. Everything the index keeps alive counts: the ID bytes, entries, PackInfo lists.
  With --tracemalloc the Python heap is traced instead (exact, but much slower: use it
  with fewer blobs).
* lookups per second: `blob_id in index` (what backup dedup asks) and `index.lookup`
  (what restore asks) for IDs that are present, `in` and `index.get` for IDs that are
  not; each is a plain Python loop over --lookups IDs, as the callers are, run --repeats
  times (median). The IDs looked up are fresh copies allocated in lookup order, as
  callers hold IDs just decoded from a tree. These four, one call per ID in random
  order, are the random-order loops. A fifth loop looks up IDs in
  the order they were stored, as restoring a file does (its blobs sit side by side in
  a few packs): the same Python code, but the rows and pack IDs it reads are already
  in the CPU cache, so the difference from the random-order loop is time spent waiting
  for memory. Rates are wall-clock; the CPU-time rate (this thread's) is shown beside
  them, as it is less disturbed by other work on the machine.
* add throughput (blobs/s), and with --load-segments the time (wall clock and CPU) to load
  the index from segments into a fresh Index as `load_index` does, and the peak resident
  memory meanwhile (what opening a large repository costs).

--write-repo URL does none of that: it adds the generated index (--blobs, --per-pack) as
segments to an existing repository, to time real commands against a large index, e.g.

    bbackup init -r /tmp/big --kdf-memory 8 --kdf-time 1
    python scripts/bench_index.py --write-repo /tmp/big
    /usr/bin/time -v bbackup backup -r /tmp/big some/tiny/dir

Target: at most 100 bytes per blob at 5 M blobs. Lookup rates are reported without a
target (issue #19 retired the 1 M lookups/s one: what counts is the time and memory of
real operations on large repositories, measured by scripts/bench_real.py). A miss is
reported, not failed: exit status is 0 unless the benchmark itself breaks.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import statistics
import struct
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

TARGET_BYTES_PER_BLOB = 100


def rss_bytes() -> int:
    """Current resident set size (not the peak) of this process."""
    with open("/proc/self/statm") as f:
        resident_pages = int(f.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def generate_packs(n_blobs: int, per_pack: int, seed: int) -> Iterator[Any]:
    """PackInfo objects holding n_blobs random blobs, per_pack to a pack (deterministic)."""
    from bbackup.crypto.aead import BlobType
    from bbackup.repository.index import PackInfo

    rng = random.Random(seed)
    made = 0
    while made < n_blobs:
        count = min(per_pack, n_blobs - made)
        ids = rng.randbytes(32 * count)
        pack_id = rng.randbytes(32).hex()
        blobs = []
        offset = 0
        for i in range(count):
            length = 800_000 + (i * 7919) % 400_000
            blobs.append((ids[32 * i : 32 * i + 32], offset, length, length + 1000))
            offset += length
        yield PackInfo(pack_id, BlobType.DATA, offset + 200, blobs)
        made += count


class BorghashIndex:
    """The part of `Index` the benchmark uses, over a borghash `HashTable` (see --impl).

    Blob ID → 16 bytes (pack number << 2 | type, offset, length, raw length, as in our
    rows); the first copy of a blob wins, as in `Index`.
    """

    def __init__(self) -> None:
        from borghash import HashTable  # type: ignore[import-not-found]

        from bbackup.crypto.aead import BlobType
        from bbackup.repository.index import IndexEntry

        self._table = HashTable(key_size=32, value_size=16)
        self._pack_ids: list[str] = []
        self._numbers = struct.Struct("=4I")
        self._types = tuple(BlobType(t) for t in range(len(BlobType)))
        self._entry = IndexEntry

    def __len__(self) -> int:
        return len(self._table)

    def add_pack(self, pack: Any, marked_at: float | None = None) -> None:
        key = len(self._pack_ids) << 2 | int(pack.blob_type)
        self._pack_ids.append(pack.pack_id)
        setdefault, encode = self._table.setdefault, self._numbers.pack
        for blob_id, offset, length, raw_length in pack.blobs:
            setdefault(blob_id, encode(key, offset, length, raw_length))

    def add_segment(self, segment: Any) -> None:
        for pack in segment.packs:
            self.add_pack(pack)

    def __contains__(self, blob_id: object) -> bool:
        # borghash raises ValueError for a key of another size; Index says False.
        return len(blob_id) == 32 and blob_id in self._table  # type: ignore[arg-type]

    def get(self, blob_id: bytes) -> Any:
        if len(blob_id) != 32:
            return None
        value = self._table.get(blob_id)
        if value is None:
            return None
        key, offset, length, raw_length = self._numbers.unpack(value)
        # As Index does: a tuple.__new__ call skips the NamedTuple's Python __new__.
        return tuple.__new__(
            self._entry,
            (self._pack_ids[key >> 2], self._types[key & 3], offset, length, raw_length),
        )

    def lookup(self, blob_id: bytes) -> Any:
        entry = self.get(blob_id)
        if entry is None:
            raise KeyError(blob_id)
        return entry

    @property
    def pack_count(self) -> int:
        return len(self._pack_ids)


class BorghashRowsIndex(BorghashIndex):
    """borghash as the table of our Index would use it (see --impl): our 48-byte rows,
    every copy of every blob, kept as `Index` keeps them (so that a pack's blob list can
    be listed), and a borghash table from blob ID to the row of its first copy."""

    def __init__(self) -> None:
        super().__init__()
        from bbackup.repository._table import ROW_SIZE, encode_rows

        self._table = self._table.__class__(key_size=32, value_size=4)
        self._rows = bytearray()
        self._row_size = ROW_SIZE
        self._encode_rows = encode_rows
        self._row_number = struct.Struct("=I")
        self._row_numbers = struct.Struct("=32x4I")

    def add_pack(self, pack: Any, marked_at: float | None = None) -> None:
        p = len(self._pack_ids)
        first = len(self._rows) // self._row_size
        rows, _wide = self._encode_rows(pack.blobs, p << 2 | int(pack.blob_type))
        self._rows += rows
        self._pack_ids.append(pack.pack_id)
        setdefault, encode = self._table.setdefault, self._row_number.pack
        for row, (blob_id, *_numbers) in enumerate(pack.blobs, first):
            setdefault(blob_id, encode(row))

    def get(self, blob_id: bytes) -> Any:
        if len(blob_id) != 32:
            return None
        value = self._table.get(blob_id)
        if value is None:
            return None
        key, offset, length, raw_length = self._row_numbers.unpack_from(
            self._rows, self._row_number.unpack(value)[0] * self._row_size
        )
        return tuple.__new__(
            self._entry,
            (self._pack_ids[key >> 2], self._types[key & 3], offset, length, raw_length),
        )


IMPLS = ("ours", "borghash", "borghash-rows")


def new_index(impl: str) -> Any:
    if impl == "borghash":
        return BorghashIndex()
    if impl == "borghash-rows":
        return BorghashRowsIndex()
    from bbackup.repository.index import Index

    return Index()


def pack_count(index: Any) -> int:
    return index.pack_count if isinstance(index, BorghashIndex) else len(index.packs)


def build_index(impl: str, n_blobs: int, per_pack: int, seed: int) -> tuple[Any, float]:
    """An index with n_blobs random blobs in packs of per_pack; (index, seconds)."""
    index = new_index(impl)
    start = time.perf_counter()
    for pack in generate_packs(n_blobs, per_pack, seed):
        index.add_pack(pack)
    len(index)  # the compact Index fills its hash table at the first lookup
    return index, time.perf_counter() - start


def time_loop(
    label: str, fn: Any, ids: list[bytes], repeats: int = 3, *, target: bool = True
) -> dict[str, Any]:
    """Run fn over ids `repeats` times; report the median rate (the first run is cold)."""
    rates = []
    cpu_rates = []
    found = 0
    for _ in range(repeats):
        start, cpu_start = time.perf_counter(), time.thread_time()
        found = fn(ids)
        seconds, cpu_seconds = time.perf_counter() - start, time.thread_time() - cpu_start
        rates.append(len(ids) / seconds if seconds else float("inf"))
        cpu_rates.append(len(ids) / cpu_seconds if cpu_seconds else float("inf"))
    return {
        "label": label,
        "n": len(ids),
        "found": found,
        "target": target,
        "per_s": statistics.median(rates),
        "runs_per_s": rates,
        "cpu_per_s": statistics.median(cpu_rates),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--blobs", type=int, default=5_000_000, help="blobs to add (default 5 M)")
    p.add_argument("--per-pack", type=int, default=16, help="blobs per pack (default 16)")
    p.add_argument("--lookups", type=int, default=1_000_000, help="IDs per lookup loop")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3, help="runs per lookup loop; median")
    p.add_argument(
        "--impl",
        choices=(*IMPLS, "both", "all"),
        default="ours",
        help="our table, borghash's, or both side by side (default ours)",
    )
    p.add_argument("--tracemalloc", action="store_true", help="trace the heap (slow)")
    p.add_argument("--load-segments", action="store_true", help="also time a segment reload")
    p.add_argument("--json", help="write the results here")
    p.add_argument(
        "--write-repo", metavar="URL", help="only add the index to this repository (see below)"
    )
    args = p.parse_args(argv)
    if args.write_repo:
        return write_repo(args)
    if args.impl in ("both", "all"):
        return compare(args, sys.argv[1:] if argv is None else argv)
    results = measure(args)
    print_report(results)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Build one implementation's index and time it; the results as a JSON-able dict."""
    import bbackup.repository.index  # noqa: F401  (imported before the baseline)

    if args.impl.startswith("borghash"):
        import borghash  # noqa: F401

    gc.collect()
    gc.disable()  # no collections in the middle of timed loops; nothing here is cyclic
    if args.tracemalloc:
        tracemalloc.start()
    before = rss_bytes()
    index, add_seconds = build_index(args.impl, args.blobs, args.per_pack, args.seed)
    gc.collect()
    after = rss_bytes()
    peak_build = peak_rss_bytes()
    traced = tracemalloc.get_traced_memory()[0] if args.tracemalloc else None
    if args.tracemalloc:
        tracemalloc.stop()
    n = len(index)
    per_blob_rss = (after - before) / n
    per_blob = traced / n if traced is not None else per_blob_rss

    rng = random.Random(args.seed + 1)
    # The IDs again, in the order they were stored, from the same generator: the same for
    # every implementation, whatever order it would list them in.
    all_ids = [
        b[0] for pack in generate_packs(args.blobs, args.per_pack, args.seed) for b in pack.blobs
    ]
    # Fresh copies, allocated in lookup order, as callers hold IDs just decoded from a tree:
    # the loop then measures the index, not cache misses on the sampled ID objects.
    hits = [bytes(memoryview(all_ids[rng.randrange(n)])) for _ in range(args.lookups)]
    first = rng.randrange(max(1, n - args.lookups))
    stored_order = [bytes(memoryview(b)) for b in all_ids[first : first + args.lookups]]
    del all_ids
    misses = [rng.randbytes(32) for _ in range(args.lookups)]

    def contains(ids: list[bytes]) -> int:
        return sum(1 for b in ids if b in index)

    def lookup(ids: list[bytes]) -> int:
        look = index.lookup
        for b in ids:
            look(b)
        return len(ids)

    def get(ids: list[bytes]) -> int:
        g = index.get
        return sum(1 for b in ids if g(b) is not None)

    def baseline(ids: list[bytes]) -> int:
        return sum(1 for b in ids if b)

    loops = [
        time_loop("hit: blob_id in index", contains, hits, args.repeats),
        time_loop("hit: index.lookup(id)", lookup, hits, args.repeats),
        time_loop("miss: blob_id in index", contains, misses, args.repeats),
        time_loop("miss: index.get(id)", get, misses, args.repeats),
        time_loop("hit, stored order: lookup", lookup, stored_order, args.repeats, target=False),
        time_loop("(loop overhead alone)", baseline, hits, args.repeats, target=False),
    ]
    packs = pack_count(index)
    load: dict[str, Any] | None = None
    if args.load_segments:
        del index, hits, misses, stored_order
        gc.collect()
        load = segment_reload(args)
    gc.enable()

    worst_lookup = min(r["per_s"] for r in loops if r["target"])
    return {
        "impl": args.impl,
        "impl_version": impl_version(args.impl),
        "machine": {
            "python": platform.python_version(),
            "cpu": cpu_model(),
            "nproc": len(os.sched_getaffinity(0)),
        },
        "blobs": n,
        "per_pack": args.per_pack,
        "packs": packs,
        "add_seconds": add_seconds,
        "adds_per_s": n / add_seconds,
        "rss_growth_bytes": after - before,
        "bytes_per_blob_rss": per_blob_rss,
        "bytes_per_blob_traced": traced / n if traced is not None else None,
        "peak_rss_after_build_bytes": peak_build,
        "peak_rss_bytes": peak_rss_bytes(),
        "lookups": loops,
        "segment_reload": load,
        "targets": {
            "bytes_per_blob": {
                "value": per_blob,
                "limit": TARGET_BYTES_PER_BLOB,
                "status": "PASS" if per_blob <= TARGET_BYTES_PER_BLOB else "MISS",
                "note": "" if n >= 5_000_000 else f"measured at {n} blobs, target is at 5 M",
            },
            "lookups_per_s": {"value": worst_lookup, "limit": None, "status": "no target"},
        },
    }


def compare(args: argparse.Namespace, argv: list[str]) -> int:
    """Run each implementation in a process of its own; print and save them side by side."""
    results = {}
    for impl in IMPLS if args.impl == "all" else IMPLS[:2]:
        out = Path(f"/tmp/bench_index_{os.getpid()}_{impl}.json")
        rest = [a for a in argv if not a.startswith("--impl") and a not in ("both", "all")]
        rest = drop_option(rest, "--json")
        cmd = [sys.executable, __file__, *rest, "--impl", impl, "--json", str(out)]
        subprocess.run(cmd, check=True)
        results[impl] = json.loads(out.read_text())
        out.unlink()
    print_comparison(results)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


def drop_option(argv: list[str], name: str) -> list[str]:
    """argv without `name VALUE` or `name=VALUE`."""
    out: list[str] = []
    skip = False
    for a in argv:
        if skip:
            skip = False
        elif a == name:
            skip = True
        elif not a.startswith(name + "="):
            out.append(a)
    return out


def impl_version(impl: str) -> str:
    if impl.startswith("borghash"):
        from importlib.metadata import version

        rows = " + our rows" if impl == "borghash-rows" else ""
        return f"borghash {version('borghash')}{rows}"
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
            check=False,
        ).stdout.strip()
    except OSError:
        commit = ""
    return f"bbackup {commit}".strip()


def segment_reload(args: argparse.Namespace) -> dict[str, Any]:
    """Serialise the packs as index segments (~10,000 packs each) and load them back into
    a fresh index as `Repository.load_index` does (every segment decoded, then each added):
    what opening a large repository costs. Time is wall clock and this thread's CPU time;
    the peak is the resident set's high-water mark during the load alone (reset before
    it), above the resident set before it."""
    from bbackup.repository.index import IndexSegment

    encoded = encode_segments(args)
    encode_s = 0.0  # (kept for older readers of the JSON)
    gc.collect()
    hwm_reset = reset_peak_rss()
    before = rss_bytes()
    start, cpu_start = time.perf_counter(), time.thread_time()
    segments = [IndexSegment.from_bytes(data) for data in encoded]
    fresh = new_index(args.impl)
    for segment in segments:
        fresh.add_segment(segment)
    len(fresh)
    load_s, load_cpu_s = time.perf_counter() - start, time.thread_time() - cpu_start
    peak = peak_rss_bytes() - before if hwm_reset else None
    del segments
    gc.collect()
    out = {
        "segments": len(encoded),
        "encoded_bytes": sum(len(e) for e in encoded),
        "encode_seconds": encode_s,
        "load_seconds": load_s,
        "load_cpu_seconds": load_cpu_s,
        "blobs_loaded_per_s": len(fresh) / load_s if load_s else None,
        "blobs_loaded_per_cpu_s": len(fresh) / load_cpu_s if load_cpu_s else None,
        "peak_rss_growth_while_loading_bytes": peak,
        "rss_growth_after_loading_bytes": rss_bytes() - before,
        "load_average": os.getloadavg(),
    }
    del fresh, encoded
    gc.collect()
    return out


def encode_segments(args: argparse.Namespace) -> list[bytes]:
    """The generated packs as index segments of about 160,000 blobs (as a backup writes)."""
    from bbackup.repository.index import IndexSegment

    packs = list(generate_packs(args.blobs, args.per_pack, args.seed))
    step = max(1, 160_000 // max(1, len(packs[0].blobs)))
    return [IndexSegment(packs[i : i + step]).to_bytes() for i in range(0, len(packs), step)]


def reset_peak_rss() -> bool:
    """Reset this process's peak resident set (VmHWM); False where Linux does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def write_repo(args: argparse.Namespace) -> int:
    """Add the generated index, as segments, to the repository at --write-repo (password
    from BBACKUP_PASSWORD): a repository with a large index to time real commands against
    (`bbackup backup` of a tiny directory loads it). No packs are written: `check` would
    find every one missing."""
    import asyncio

    from bbackup.repository.index import INDEX_KIND
    from bbackup.repository.opening import open_repository
    from bbackup.storage.factory import open_storage

    async def write() -> int:
        repo = await open_repository(
            open_storage(args.write_repo), os.environ["BBACKUP_PASSWORD"], load_index=False
        )
        try:
            encoded = encode_segments(args)
            for data in encoded:
                await repo.save_document("index", INDEX_KIND, data)
        finally:
            await repo.aclose()
        print(f"{args.write_repo}: {len(encoded)} segments, {args.blobs:,} blobs")
        return 0

    return asyncio.run(write())


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def print_report(r: dict[str, Any]) -> None:
    mib = 1024 * 1024
    print(
        f"index benchmark ({r['impl_version']}): {r['blobs']:,} blobs in {r['packs']:,}"
        f" packs of {r['per_pack']}"
    )
    print(f"  python {r['machine']['python']} on {r['machine']['cpu']}")
    print(f"  add:      {r['add_seconds']:.2f} s ({r['adds_per_s']:,.0f} blobs/s)")
    print(
        f"  memory:   RSS +{r['rss_growth_bytes'] / mib:,.1f} MiB = "
        f"{r['bytes_per_blob_rss']:.1f} bytes/blob"
        + (
            f"; traced heap {r['bytes_per_blob_traced']:.1f} bytes/blob"
            if r["bytes_per_blob_traced"] is not None
            else ""
        )
        + f"; peak RSS {r['peak_rss_after_build_bytes'] / mib:,.0f} MiB after the build"
        + f" ({r['peak_rss_bytes'] / mib:,.0f} MiB at the end)"
    )
    print(f"  {'lookups':32s} {'wall /s':>11s} {'CPU /s':>11s}")
    for loop in r["lookups"]:
        print(
            f"  {loop['label']:32s} {loop['per_s']:>11,.0f} {loop['cpu_per_s']:>11,.0f}"
            f"   ({loop['found']:,} found{'' if loop['target'] else '; not random order'})"
        )
    if r["segment_reload"]:
        s = r["segment_reload"]
        peak = s["peak_rss_growth_while_loading_bytes"]
        print(
            f"  segments: {s['segments']} ({s['encoded_bytes'] / mib:,.1f} MiB) load "
            f"{s['load_seconds']:.2f} s ({s['blobs_loaded_per_s']:,.0f} blobs/s), CPU "
            f"{s['load_cpu_seconds']:.2f} s ({s['blobs_loaded_per_cpu_s']:,.0f} blobs/s); "
            f"RSS +{s['rss_growth_after_loading_bytes'] / mib:,.0f} MiB after"
            + (f", peak +{peak / mib:,.0f} MiB while loading" if peak is not None else "")
            + f"; load average {s['load_average'][0]:.1f}"
        )
    t = r["targets"]
    b, lk = t["bytes_per_blob"], t["lookups_per_s"]
    print(
        f"  target bytes/blob ≤ {b['limit']}: {b['value']:.1f} {b['status']}"
        + (f" ({b['note']})" if b["note"] else "")
    )
    print(f"  lookups/s, slowest random-order loop (wall clock; no target): {lk['value']:,.0f}")


def print_comparison(results: dict[str, dict[str, Any]]) -> None:
    """One line per figure, one column per implementation."""
    names = list(results)
    rows: list[tuple[str, list[str]]] = [
        ("version", [r["impl_version"] for r in results.values()]),
        ("bytes/blob (RSS growth)", [f"{r['bytes_per_blob_rss']:.1f}" for r in results.values()]),
        ("add blobs/s", [f"{r['adds_per_s']:,.0f}" for r in results.values()]),
    ]
    for i, loop in enumerate(next(iter(results.values()))["lookups"]):
        rows.append(
            (
                loop["label"] + " /s",
                [
                    f"{r['lookups'][i]['per_s']:,.0f} ({r['lookups'][i]['cpu_per_s']:,.0f})"
                    for r in results.values()
                ],
            )
        )
    if all(r["segment_reload"] for r in results.values()):
        rows.append(
            (
                "load segments (s)",
                [f"{r['segment_reload']['load_seconds']:.2f}" for r in results.values()],
            )
        )
    print(f"\n{'lookups: wall clock (CPU time)':34s}" + "".join(f"{n:>26s}" for n in names))
    for label, values in rows:
        print(f"{label:34s}" + "".join(f"{v:>26s}" for v in values))


if __name__ == "__main__":
    sys.exit(main())
