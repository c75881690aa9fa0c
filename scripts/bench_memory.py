"""Backup and restore memory against the size of the file backed up (issue #5, "Scale").

    python scripts/bench_memory.py [--sizes-mib 64,512,2048] [--work-dir bench-out/memory]
                                   [--tools bbackup,restic] [--json FILE]

For each size, one file of that many MiB of incompressible data (seeded, reproducible)
is backed up into a fresh local repository, then restored, by each tool; the peak
resident set size of each command (its own rusage, from wait4) is reported with its wall
time. bbackup reads a file in blocks, seals chunks as they come and keeps a bounded
number of packs in memory, so its peak RSS should not depend on the file's size; the
table shows whether it does. Nothing is asserted: exit status 0 unless a command fails
or a restore differs from its source.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

MiB = 1024 * 1024
PASSWORD = "bench-memory-not-secret"


def make_file(path: Path, size_mib: int, seed: int) -> None:
    if path.exists() and path.stat().st_size == size_mib * MiB:
        return
    rng = random.Random(seed)
    with open(path, "wb") as f:
        for _ in range(size_mib):
            f.write(rng.randbytes(MiB))


def run(argv: list[str], env: dict[str, str]) -> dict[str, float]:
    """Run a command; its wall time and peak RSS (MiB), from its own rusage."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _pid, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{' '.join(argv)} exited {code}:\n{stderr}")
    return {"wall_s": round(wall, 3), "peak_rss_mib": round(usage.ru_maxrss / 1024, 1)}


def commands(tool: str, repo: Path, src: Path, target: Path) -> list[tuple[str, list[str]]]:
    if tool == "bbackup":
        exe = [sys.executable, "-m", "bbackup"]
        return [
            ("init", [*exe, "init", "--repo", str(repo)]),
            ("backup", [*exe, "backup", "--repo", str(repo), str(src)]),
            ("restore", [*exe, "restore", "latest", "--repo", str(repo), "--target", str(target)]),
        ]
    exe = ["restic", "-r", str(repo)]
    return [
        ("init", [*exe, "init"]),
        ("backup", [*exe, "backup", str(src)]),
        ("restore", [*exe, "restore", "latest", "--target", str(target)]),
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes-mib", default="64,512,2048", help="file sizes, comma list")
    p.add_argument("--work-dir", default="bench-out/memory", help="data and repositories")
    p.add_argument("--tools", default="bbackup,restic", help="comma list")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)
    sizes = [int(s) for s in args.sizes_mib.split(",")]
    tools = [t for t in args.tools.split(",") if t != "restic" or shutil.which("restic")]
    work = Path(args.work_dir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "BBACKUP_PASSWORD": PASSWORD,
        "RESTIC_PASSWORD": PASSWORD,
        "BBACKUP_CACHE_DIR": str(work / "cache"),
        "RESTIC_CACHE_DIR": str(work / "cache-restic"),
    }
    results: list[dict[str, Any]] = []
    for size in sizes:
        src = work / f"data-{size}"
        src.mkdir(exist_ok=True)
        make_file(src / "big.bin", size, args.seed + size)
        for tool in tools:
            repo, target = work / f"repo-{tool}-{size}", work / f"restore-{tool}-{size}"
            shutil.rmtree(repo, ignore_errors=True)
            shutil.rmtree(target, ignore_errors=True)
            row: dict[str, Any] = {"size_mib": size, "tool": tool}
            for phase, command in commands(tool, repo, src, target):
                os.sync()
                row[phase] = run(command, env)
            restored = target / str(src / "big.bin").lstrip("/")
            row["restore_matches"] = filecmp.cmp(src / "big.bin", restored, shallow=False)
            results.append(row)
            shutil.rmtree(repo, ignore_errors=True)
            shutil.rmtree(target, ignore_errors=True)
            print(
                f"  {size:6,d} MiB  {tool:8s} backup {row['backup']['wall_s']:6.2f} s"
                f" {row['backup']['peak_rss_mib']:7.1f} MiB   restore"
                f" {row['restore']['wall_s']:6.2f} s {row['restore']['peak_rss_mib']:7.1f} MiB"
                f"   {'restored exactly' if row['restore_matches'] else 'RESTORE DIFFERS'}",
                flush=True,
            )
    print()
    print("| file MiB | tool | backup s | backup peak RSS MiB | restore s | restore peak RSS MiB |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['size_mib']:,} | {r['tool']} | {r['backup']['wall_s']} "
            f"| {r['backup']['peak_rss_mib']} | {r['restore']['wall_s']} "
            f"| {r['restore']['peak_rss_mib']} |"
        )
    for tool in tools:
        rss = [r["backup"]["peak_rss_mib"] for r in results if r["tool"] == tool]
        print(f"{tool}: backup peak RSS from {min(rss)} to {max(rss)} MiB over {sizes} MiB files")
    if args.json:
        Path(args.json).write_text(json.dumps({"sizes_mib": sizes, "results": results}, indent=2))
    return 0 if all(r["restore_matches"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
