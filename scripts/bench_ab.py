"""A/B of two bbackup source trees on one data directory, by CPU time and peak RSS, which
a loaded machine disturbs far less than wall time.

    python scripts/bench_ab.py DATA --a /tmp/before/src --b src [--repeat 3]

For each repeat, A and B (alternating who goes first) each back DATA up into a fresh
local repository, back it up again unchanged, and restore it into an empty directory.
Each command runs through bench.py's spawn helper (wait4: user + sys CPU, peak RSS).
Prints the medians per phase and the ratio B / A.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import bench

PHASES = ("backup_first", "backup_unchanged", "restore")


def run_once(src: Path, data: Path, work: Path, label: str) -> dict[str, tuple[float, float]]:
    """phase → (CPU seconds, peak RSS MiB) for one source tree."""
    repo, cache, target = work / "repo", work / "cache", work / "restore"
    for path in (repo, cache, target):
        shutil.rmtree(path, ignore_errors=True)
    env = bench.clean_env()
    env.update(PYTHONPATH=str(src), BBACKUP_PASSWORD="ab", BBACKUP_CACHE_DIR=str(cache))
    exe = [sys.executable, "-m", "bbackup"]
    subprocess.run([*exe, "init", "--repo", str(repo)], env=env, check=True, capture_output=True)
    out: dict[str, tuple[float, float]] = {}
    for phase in PHASES:
        if phase == "restore":
            cmd = [*exe, "restore", "latest", "--repo", str(repo), "--target", str(target)]
        else:
            cmd = [*exe, "backup", "--repo", str(repo), "--host", "ab", str(data)]
        usage, _ = bench.run_measured([*cmd, "--json"], env, work, f"{label}-{phase}")
        if usage.exit_code != 0:
            raise SystemExit(f"{label} {phase} failed: see {work}/{label}-{phase}.err")
        out[phase] = (usage.user_s + usage.sys_s, usage.max_rss_kib / 1024)
        shutil.rmtree(target, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data")
    p.add_argument("--a", required=True, help="src/ directory of build A (before)")
    p.add_argument("--b", required=True, help="src/ directory of build B (after)")
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args(argv)
    data = Path(args.data).resolve()
    builds = {"A": Path(args.a).resolve(), "B": Path(args.b).resolve()}
    for src in builds.values():
        bench.compile_bbackup(str(src))
    results: dict[str, list[dict[str, tuple[float, float]]]] = {"A": [], "B": []}
    work = Path(tempfile.mkdtemp(prefix="bench-ab-", dir=Path("bench-out").resolve()))
    try:
        for r in range(args.repeat):
            for label in ("A", "B") if r % 2 == 0 else ("B", "A"):
                results[label].append(run_once(builds[label], data, work, label))
                cpu = " ".join(f"{results[label][-1][ph][0]:.2f}" for ph in PHASES)
                print(f"  r{r} {label}: CPU s {cpu}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n| phase | CPU s A | CPU s B | B/A | RSS MiB A | RSS MiB B | B/A |  ({data})")
    print("|---|---|---|---|---|---|---|")
    for phase in PHASES:
        cpu = {k: statistics.median(run[phase][0] for run in v) for k, v in results.items()}
        rss = {k: statistics.median(run[phase][1] for run in v) for k, v in results.items()}
        print(
            f"| {phase} | {cpu['A']:.2f} | {cpu['B']:.2f} | {cpu['B'] / cpu['A']:.2f} "
            f"| {rss['A']:.0f} | {rss['B']:.0f} | {rss['B'] / rss['A']:.2f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
