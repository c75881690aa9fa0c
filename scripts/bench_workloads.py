"""The data sets of scripts/bench_real.py: a real many-file tree, the Python standard library
plus large random files, a synthetic tree of many small files, and bench.py's seeded set.

Each builder writes its data once under the work directory (a stamp file records what was
written, so a later run with the same parameters reuses it) and returns a `Workload`: what
to back up, which backends it runs on, and how many files and bytes it holds.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import stat
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

KiB = 1024
MiB = 1024 * KiB

#: The workloads bench_real.py knows, in the order it runs them, and their default backends.
WORKLOAD_BACKENDS: dict[str, tuple[str, ...]] = {
    "usr-share": ("local",),
    "small-files": ("local",),
    "stdlib": ("local",),
    "stdlib-s3": ("s3",),
    "seeded": ("local",),
}


@dataclass(slots=True)
class Workload:
    """One data set: the directory both tools back up, and what it holds."""

    name: str
    source: Path
    backends: tuple[str, ...]
    description: str
    files: int = 0
    bytes: int = 0
    extra: dict[str, object] = field(default_factory=dict)


def tree_size(root: Path) -> tuple[int, int]:
    """(regular files, their bytes) under root, symlinks not followed."""
    files = total = 0
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                files += 1
                total += st.st_size
    return files, total


def manifest(root: Path) -> dict[str, tuple[int, str]]:
    """Relative path → (size, BLAKE2b) of every regular file under root (symlinks skipped)."""
    out: dict[str, tuple[int, str]] = {}
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            path = os.path.join(dirpath, name)
            try:
                st = os.lstat(path)
                if not stat.S_ISREG(st.st_mode):
                    continue
                h = hashlib.blake2b(digest_size=16)
                with open(path, "rb") as f:
                    while block := f.read(1 * MiB):
                        h.update(block)
            except OSError:
                continue
            out[os.path.relpath(path, root)] = (st.st_size, h.hexdigest())
    return out


def _stamped(dest: Path, want: dict[str, object]) -> bool:
    """True if dest already holds the data described by want (from an earlier run)."""
    stamp = dest.with_name(dest.name + ".stamp")
    return dest.is_dir() and stamp.exists() and stamp.read_text() == json.dumps(want)


def _stamp(dest: Path, want: dict[str, object]) -> None:
    dest.with_name(dest.name + ".stamp").write_text(json.dumps(want))


def _random_file(path: Path, size: int, rng: random.Random) -> None:
    with open(path, "wb") as f:
        left = size
        while left > 0:
            n = min(8 * MiB, left)
            f.write(rng.randbytes(n))
            left -= n


def real_tree(path: Path) -> Workload:
    """A tree that exists on this machine (default /usr/share), backed up where it is."""
    files, total = tree_size(path)
    return Workload(
        "usr-share", path, WORKLOAD_BACKENDS["usr-share"], f"{path} (real, in place)", files, total
    )


def stdlib_plus_random(work: Path, name: str, random_mib: int, seed: int) -> Workload:
    """A copy of the Python standard library (no site-packages) and random files."""
    dest = work / f"data-{name}"
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    want: dict[str, object] = {"stdlib": str(stdlib), "random_mib": random_mib, "seed": seed}
    if not _stamped(dest, want):
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        shutil.copytree(
            stdlib,
            dest / "stdlib",
            symlinks=True,
            ignore=shutil.ignore_patterns("site-packages", "__pycache__"),
        )
        rng = random.Random(seed)
        (dest / "large").mkdir()
        # Four files of a quarter each: large enough that chunking, not per-file work, counts.
        for i in range(4):
            _random_file(dest / "large" / f"random-{i}.bin", random_mib * MiB // 4, rng)
        _stamp(dest, want)
    files, total = tree_size(dest)
    desc = f"Python {stdlib.name} standard library + {random_mib} MiB random"
    return Workload(name, dest.resolve(), WORKLOAD_BACKENDS[name], desc, files, total)


def small_files(work: Path, count: int, seed: int) -> Workload:
    """count files of 128 B - 4 KiB, 1,000 per directory, half text, half random bytes."""
    dest = work / "data-small-files"
    want: dict[str, object] = {"count": count, "seed": seed}
    if not _stamped(dest, want):
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        rng = random.Random(seed)
        words = [bytes(rng.choices(b"etaoinshrdlu", k=rng.randint(2, 9))) for _ in range(500)]
        for i in range(count):
            d = dest / f"d{i // 1_000_000:02d}" / f"{i // 1000 % 1000:03d}"
            if i % 1000 == 0:
                d.mkdir(parents=True, exist_ok=True)
            size = rng.randint(128, 4 * KiB)
            if i % 2:
                data = b" ".join(rng.choices(words, k=size // 5 + 1))[:size]
            else:
                data = rng.randbytes(size)
            with open(d / f"f{i:07d}.{'txt' if i % 2 else 'bin'}", "wb") as f:
                f.write(data)
        _stamp(dest, want)
    files, total = tree_size(dest)
    desc = f"{count:,} synthetic files of 128 B - 4 KiB"
    return Workload(
        "small-files", dest.resolve(), WORKLOAD_BACKENDS["small-files"], desc, files, total
    )


def seeded(work: Path, size_mb: float, seed: int) -> Workload:
    """bench.py's seeded data set (its edit set is not applied here)."""
    import bench

    dest = work / "data-seeded"
    ds = bench.plan_dataset(size_mb, seed)
    want: dict[str, object] = {"size_mb": size_mb, "seed": seed, "files": len(ds.files)}
    if not _stamped(dest, want):
        bench.write_dataset(dest, ds)
        _stamp(dest, want)
    files, total = tree_size(dest)
    desc = f"bench.py seeded set, {size_mb:g} MiB, seed {seed}"
    return Workload("seeded", dest.resolve(), WORKLOAD_BACKENDS["seeded"], desc, files, total)
