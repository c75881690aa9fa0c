"""A/B of two bbackup source trees on one data directory, by CPU time and peak RSS, which
a loaded machine disturbs far less than wall time.

    python scripts/bench_ab.py DATA --a /tmp/before/src --b src [--repeat 3]
        [--cold] [--phases backup_first,backup_unchanged] [--repo-dir /tmp/x]

For each repeat, A and B (alternating who goes first) each back DATA up into a fresh
local repository, back it up again unchanged, and restore it into an empty directory.
Each command runs through bench.py's spawn helper (wait4: user + sys CPU, peak RSS).
Prints the medians per phase (with every repeat's value, for the spread) and the ratio
B / A, for CPU, wall time and peak RSS, and the load average before each command.
`--cold` (as root) syncs and drops the page cache before every measured command, so the
reads and the walk wait for the disk as on a first backup after a reboot; the page cache
is otherwise not touched. The restore needs the backup phases before it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import bench

PHASES = ("backup_first", "backup_unchanged", "restore")
#: phase → (CPU seconds, peak RSS MiB, wall seconds, load average before)
Result = dict[str, tuple[float, float, float, float]]


def drop_page_cache() -> None:
    """Write back and drop the page cache, dentries and inodes (needs root)."""
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def run_once(
    src: Path, data: Path, work: Path, label: str, *, phases: tuple[str, ...], cold: bool
) -> Result:
    """The measurements of each phase for one source tree."""
    repo, cache, target = work / "repo", work / "cache", work / "restore"
    for path in (repo, cache, target):
        shutil.rmtree(path, ignore_errors=True)
    env = bench.clean_env()
    env.update(PYTHONPATH=str(src), BBACKUP_PASSWORD="ab", BBACKUP_CACHE_DIR=str(cache))
    exe = [sys.executable, "-m", "bbackup"]
    subprocess.run([*exe, "init", "--repo", str(repo)], env=env, check=True, capture_output=True)
    out: Result = {}
    for phase in phases:
        if phase == "restore":
            cmd = [*exe, "restore", "latest", "--repo", str(repo), "--target", str(target)]
        else:
            cmd = [*exe, "backup", "--repo", str(repo), "--host", "ab", str(data)]
        if cold:
            drop_page_cache()
        load = os.getloadavg()[0]
        usage, _ = bench.run_measured([*cmd, "--json"], env, work, f"{label}-{phase}")
        if usage.exit_code != 0:
            raise SystemExit(f"{label} {phase} failed: see {work}/{label}-{phase}.err")
        out[phase] = (usage.user_s + usage.sys_s, usage.max_rss_kib / 1024, usage.wall_s, load)
        shutil.rmtree(target, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data")
    p.add_argument("--a", required=True, help="src/ directory of build A (before)")
    p.add_argument("--b", required=True, help="src/ directory of build B (after)")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--cold", action="store_true", help="drop the page cache before each command")
    p.add_argument("--phases", default=",".join(PHASES), help="comma-separated, in order")
    p.add_argument("--work-dir", default="bench-out", help="where repositories are made")
    args = p.parse_args(argv)
    phases = tuple(x for x in args.phases.split(",") if x)
    if not set(phases) <= set(PHASES):
        p.error(f"--phases: choose from {', '.join(PHASES)}")
    if args.cold and os.geteuid() != 0:
        p.error("--cold needs root (it writes /proc/sys/vm/drop_caches)")
    data = Path(args.data).resolve()
    builds = {"A": Path(args.a).resolve(), "B": Path(args.b).resolve()}
    for src in builds.values():
        bench.compile_bbackup(str(src))
    results: dict[str, list[Result]] = {"A": [], "B": []}
    Path(args.work_dir).mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-ab-", dir=Path(args.work_dir).resolve()))
    try:
        for r in range(args.repeat):
            for label in ("A", "B") if r % 2 == 0 else ("B", "A"):
                run = run_once(builds[label], data, work, label, phases=phases, cold=args.cold)
                results[label].append(run)
                text = "  ".join(
                    f"{ph} cpu {run[ph][0]:.2f} wall {run[ph][2]:.2f} rss {run[ph][1]:.0f}"
                    f" load {run[ph][3]:.1f}"
                    for ph in phases
                )
                print(f"  r{r} {label}: {text}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    cache = "cold cache" if args.cold else "page cache as found"
    print(f"\n{data}, {cache}; medians (every repeat in brackets)")
    print("| phase | measure | A | B | B/A |")
    print("|---|---|---|---|---|")
    for phase in phases:
        for i, measure in ((0, "CPU s"), (2, "wall s"), (1, "peak RSS MiB")):
            each = {k: [run[phase][i] for run in v] for k, v in results.items()}
            mid = {k: statistics.median(v) for k, v in each.items()}
            cells = {k: f"{mid[k]:.2f} ({' '.join(f'{x:.2f}' for x in each[k])})" for k in mid}
            ratio = mid["B"] / mid["A"]
            print(f"| {phase} | {measure} | {cells['A']} | {cells['B']} | {ratio:.2f} |")
    loads = [run[ph][3] for v in results.values() for run in v for ph in phases]
    print(f"load average (1 min) before the commands: {min(loads):.1f}-{max(loads):.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
