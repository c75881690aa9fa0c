"""The S3 requests of bbackup and restic commands over time: the serial chain of round
trips each command waits for, through moto behind scripts/latency_proxy.py.

    python scripts/s3_timeline.py DIR [--latency-ms 30] [--tools bbackup,restic]
        [--bbackup-src SRC]

Initialises a repository per tool, backs DIR up, then runs an unchanged re-backup, the
same with an empty cache, and a restore with an empty cache, printing for each command
every request with its start time (ms since the command started) and the command's wall
and CPU time. Requests that start within a few ms of each other ran concurrently; a
staircase of latency-sized steps is a serial chain.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import bench

STEPS = (
    ("backup_first", "backup", False),
    ("backup_unchanged", "backup", False),
    ("backup_unchanged_nocache", "backup", True),
    ("restore_nocache", "restore", True),
)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data")
    p.add_argument("--latency-ms", type=float, default=30.0, help="added to every request")
    p.add_argument("--tools", default="bbackup,restic")
    p.add_argument("--bbackup-src", default=None)
    args = p.parse_args(argv)
    data = Path(args.data).resolve()
    s3 = bench.S3Env(args.latency_ms / 2)
    work = Path(tempfile.mkdtemp(prefix="s3-timeline-"))
    bucket = s3.moto.create_bucket("timeline")
    env = bench.clean_env()
    bench.compile_bbackup(args.bbackup_src)
    try:
        for name in args.tools.split(","):
            if name == "bbackup":
                exe = [sys.executable, "-m", "bbackup"]
                tool: bench.Tool = bench.Bbackup(f"s3://{bucket}/bb", work / "c", env, exe, s3.url)
                if args.bbackup_src:
                    tool.env["PYTHONPATH"] = str(Path(args.bbackup_src).resolve())
            else:
                restic = shutil.which("restic") or "/root/.cache/bbackup-peers/x/usr/bin/restic"
                tool = bench.Restic(f"s3:{s3.url}/{bucket}/restic", work / "rc", env, restic, True)
            subprocess.run(
                tool.command("init", data, work), env=tool.env, check=True, capture_output=True
            )
            for phase, kind, empty_cache in STEPS:
                run_env = dict(tool.env)
                if empty_cache:
                    cache = work / f"empty-{name}-{phase}"
                    run_env["BBACKUP_CACHE_DIR" if name == "bbackup" else "RESTIC_CACHE_DIR"] = str(
                        cache
                    )
                target = work / "restore"
                shutil.rmtree(target, ignore_errors=True)
                s3.proxy.stats.reset()
                start = time.monotonic()
                usage, _ = bench.run_measured(
                    tool.command(kind, data, target), run_env, work, f"{name}-{phase}"
                )
                trace = list(s3.proxy.stats.trace)
                print(
                    f"\n== {name} {phase}: {usage.wall_s:.2f} s wall, "
                    f"{usage.user_s + usage.sys_s:.2f} s CPU, {len(trace)} requests, "
                    f"exit {usage.exit_code}"
                )
                for t, method, target_path in trace:
                    print(f"  {1000 * (t - start):8.0f} ms  {method:6s} {target_path[:90]}")
    finally:
        s3.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
