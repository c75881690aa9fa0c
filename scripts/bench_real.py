"""bbackup vs restic on the data and networks users meet: real and many-file trees, cold
caches, S3 behind a slow link, with rclone as the transfer ceiling.

    python scripts/bench_real.py [--workloads usr-share,small-files,stdlib,stdlib-s3,seeded]
        [--repeat 3] [--small-files 1000000] [--real-tree /usr/share] [--latency-ms 30]
        [--out docs/bench/real.json]      # also writes real.md (tables) and real.svg (chart)

For every workload (scripts/bench_workloads.py), backend and repeat, both tools get a fresh
repository (init is not measured), then run each phase one after the other, the tool that
goes first alternating between repeats. Before every measured command the previous phase's
outputs (restore targets) are gone and the page cache is dropped (`sync; echo 3 >
/proc/sys/vm/drop_caches`, needs root; without it the JSON says `"cold_cache": false`).

Phases: local `backup_first`, `backup_unchanged`, `restore`; on S3 also
`backup_unchanged_nocache` and `restore_nocache`, run with an empty cache directory (a new
machine). S3 is moto on 127.0.0.1 behind scripts/latency_proxy.py, which counts requests by
operation for every tool and adds --latency-ms to every request (half each way). rclone
copies the same directory up (`upload`) and back down (`download`) through the same proxy:
the transfer ceiling. Each command's wall time, CPU (user + sys) and peak RSS come from
wait4 (bench.py's spawn helper); stored size is the repository's bytes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import bench
import bench_report
import bench_workloads
from bench_workloads import Workload

PHASES = {
    "local": ("backup_first", "backup_unchanged", "restore"),
    "s3": (
        "backup_first",
        "backup_unchanged",
        "restore",
        "backup_unchanged_nocache",
        "restore_nocache",
    ),
}
#: rclone's phases, run after the tools' phase of the same kind on S3.
RCLONE_AFTER = {"backup_first": "upload", "restore_nocache": "download"}


@dataclass(slots=True)
class Measurement:
    workload: str
    tool: str
    backend: str
    phase: str
    repeat: int
    exit_code: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    max_rss_mib: float = 0.0
    repo_bytes: int = 0
    requests: dict[str, int] = field(default_factory=dict)
    bytes_up: int = 0
    bytes_down: int = 0
    cold_cache: bool = False
    verified: bool | None = None
    loadavg: float = 0.0
    log: str = ""


class CacheDropper:
    """Drops the page cache before a measured command; says once if it cannot."""

    def __init__(self) -> None:
        self.works = True

    def drop(self) -> bool:
        os.sync()
        if not self.works:
            return False
        try:
            with open("/proc/sys/vm/drop_caches", "w") as f:
                f.write("3\n")
        except OSError as exc:
            self.works = False
            print(f"cannot drop the page cache ({exc}): caches stay warm", file=sys.stderr)
            return False
        return True


@dataclass
class Run:
    """Everything one benchmark run shares."""

    args: argparse.Namespace
    work: Path
    restic: str
    rclone: str | None
    bbackup_exe: list[str]
    dropper: CacheDropper = field(default_factory=CacheDropper)
    s3: Any = None
    measurements: list[Measurement] = field(default_factory=list)


def rclone_env(base: dict[str, str], endpoint: str) -> dict[str, str]:
    env = dict(base)
    prefix = "RCLONE_CONFIG_BENCH_"
    env.update(
        {
            prefix + "TYPE": "s3",
            prefix + "PROVIDER": "Other",
            prefix + "ACCESS_KEY_ID": "testing",
            prefix + "SECRET_ACCESS_KEY": "testing",
            prefix + "REGION": "us-east-1",
            prefix + "ENDPOINT": endpoint,
            prefix + "FORCE_PATH_STYLE": "true",
        }
    )
    return env


def measure(
    run: Run,
    wl: Workload,
    backend: str,
    repeat: int,
    tool: str,
    phase: str,
    cmd: list[str],
    env: dict[str, str],
    logs: Path,
) -> Measurement:
    """Run one command from a dropped page cache and record what it cost."""
    if run.s3 is not None:
        run.s3.proxy.stats.reset()
    m = Measurement(wl.name, tool, backend, phase, repeat)
    m.cold_cache = run.dropper.drop()
    m.loadavg = os.getloadavg()[0]
    print(f"  [{wl.name} {backend} r{repeat}] {tool:8s} {phase:25s}", end="", flush=True)
    usage, _stdout = bench.run_measured(cmd, env, logs, f"{tool}-{phase}")
    m.exit_code, m.wall_s = usage.exit_code, usage.wall_s
    m.cpu_s = usage.user_s + usage.sys_s
    m.max_rss_mib = usage.max_rss_kib / 1024
    m.log = str(logs / f"{tool}-{phase}")
    if run.s3 is not None:
        m.requests = run.s3.proxy.stats.snapshot()
        m.bytes_up, m.bytes_down = run.s3.proxy.stats.bytes_up, run.s3.proxy.stats.bytes_down
    note = "" if m.exit_code == 0 else f"  EXIT {m.exit_code} (see {m.log}.err)"
    print(
        f" {m.wall_s:8.2f} s  cpu {m.cpu_s:7.2f} s  rss {m.max_rss_mib:6.1f} MiB"
        + (f"  req {bench._req_text(m.requests)}" if m.requests else "")
        + f"  load {m.loadavg:.1f}{note}",
        flush=True,
    )
    run.measurements.append(m)
    return m


def run_backend(run: Run, wl: Workload, backend: str, repeat: int, source_manifest: Any) -> None:
    args = run.args
    run_dir = run.work / f"{wl.name}-{backend}-r{repeat}"
    shutil.rmtree(run_dir, ignore_errors=True)
    logs = run_dir / "logs"
    logs.mkdir(parents=True)
    base_env = bench.clean_env()
    bucket = f"real-{wl.name}-r{repeat}-{os.getpid()}"
    s3url = None
    if backend == "s3":
        run.s3.moto.create_bucket(bucket)
        s3url = run.s3.url
    tools: dict[str, bench.Tool] = {}
    for name in ("bbackup", "restic"):
        cache = run_dir / "cache" / name
        if backend == "local":
            repo = str(run_dir / "repo" / name)
        elif name == "bbackup":
            repo = f"s3://{bucket}/bbackup"
        else:
            repo = f"s3:{s3url}/{bucket}/restic"
        if name == "bbackup":
            tools[name] = bench.Bbackup(repo, cache, base_env, run.bbackup_exe, s3url)
            if args.bbackup_src:
                tools[name].env["PYTHONPATH"] = str(Path(args.bbackup_src).resolve())
        else:
            tools[name] = bench.Restic(repo, cache, base_env, run.restic, backend == "s3")
        init = tools[name].command("init", wl.source, run_dir)
        done = subprocess.run(init, env=tools[name].env, capture_output=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"{name} init failed: {done.stderr.decode(errors='replace')}")

    def stored(name: str) -> int:
        if backend == "local":
            return bench.dir_bytes(Path(tools[name].repo))
        return int(run.s3.object_bytes(bucket, f"{name}/"))

    order = ["bbackup", "restic"] if repeat % 2 == 0 else ["restic", "bbackup"]
    failed: set[str] = set()
    try:
        for phase in PHASES[backend]:
            for name in order:
                if name in failed:
                    continue
                tool = tools[name]
                env = dict(tool.env)
                if phase.endswith("_nocache"):
                    empty = run_dir / "empty-cache" / f"{name}-{phase}"
                    shutil.rmtree(empty, ignore_errors=True)
                    empty.mkdir(parents=True)
                    env["BBACKUP_CACHE_DIR" if name == "bbackup" else "RESTIC_CACHE_DIR"] = str(
                        empty
                    )
                target = run_dir / "restore"
                shutil.rmtree(target, ignore_errors=True)
                target.mkdir(parents=True)
                cmd = tool.command(phase.removesuffix("_nocache"), wl.source, target)
                m = measure(run, wl, backend, repeat, name, phase, cmd, env, logs)
                m.repo_bytes = stored(name)
                if phase.startswith("restore") and m.exit_code == 0 and source_manifest:
                    got = bench_workloads.manifest(target / str(wl.source).lstrip("/"))
                    m.verified = got == source_manifest
                    if not m.verified:
                        print(f"    RESTORE MISMATCH ({len(got)} vs {len(source_manifest)})")
                shutil.rmtree(target, ignore_errors=True)
                if m.exit_code != 0:
                    failed.add(name)
            if backend == "s3" and phase in RCLONE_AFTER and run.rclone:
                rclone_phase(run, wl, repeat, RCLONE_AFTER[phase], bucket, run_dir, logs)
    finally:
        if backend == "s3":
            with contextlib.suppress(Exception):
                run.s3.moto.remove_bucket(bucket)
        if not args.keep:
            shutil.rmtree(run_dir, ignore_errors=True)


def rclone_phase(
    run: Run, wl: Workload, repeat: int, phase: str, bucket: str, run_dir: Path, logs: Path
) -> None:
    assert run.rclone is not None
    env = rclone_env(bench.clean_env(), run.s3.url)
    flags = ["--transfers", "16", "--checkers", "16", "--config", "/dev/null"]
    remote = f"bench:{bucket}/rclone"
    target = run_dir / "rclone-down"
    shutil.rmtree(target, ignore_errors=True)
    if phase == "upload":
        cmd = [run.rclone, "copy", *flags, str(wl.source), remote]
    else:
        target.mkdir(parents=True)
        cmd = [run.rclone, "copy", *flags, remote, str(target)]
    m = measure(run, wl, "s3", repeat, "rclone", phase, cmd, env, logs)
    m.repo_bytes = int(run.s3.object_bytes(bucket, "rclone/"))
    shutil.rmtree(target, ignore_errors=True)


def build_workloads(args: argparse.Namespace, work: Path) -> list[Workload]:
    out = []
    for name in args.workloads:
        t0 = time.perf_counter()
        print(f"preparing {name} ...", flush=True)
        if name == "usr-share":
            wl = bench_workloads.real_tree(Path(args.real_tree))
        elif name == "small-files":
            wl = bench_workloads.small_files(work, args.small_files, args.seed)
        elif name in ("stdlib", "stdlib-s3"):
            mib = args.random_mib if name == "stdlib" else args.random_mib_s3
            wl = bench_workloads.stdlib_plus_random(work, name, mib, args.seed)
        else:
            wl = bench_workloads.seeded(work, args.seeded_mb, args.seed)
        if args.backends:
            wl.backends = tuple(b for b in wl.backends if b in args.backends) or wl.backends
        print(
            f"  {wl.description}: {wl.files:,} files, {wl.bytes / bench.MiB:,.0f} MiB,"
            f" backends {','.join(wl.backends)} ({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
        out.append(wl)
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workloads", default=",".join(bench_workloads.WORKLOAD_BACKENDS))
    p.add_argument("--repeat", type=int, default=3, help="alternating repeats (default 3)")
    p.add_argument("--real-tree", default="/usr/share", help="the real tree (usr-share)")
    p.add_argument("--small-files", type=int, default=1_000_000, help="files of small-files")
    p.add_argument("--random-mib", type=int, default=512, help="random MiB beside stdlib")
    p.add_argument("--random-mib-s3", type=int, default=128, help="the same, for stdlib-s3")
    p.add_argument("--seeded-mb", type=float, default=800, help="size of the seeded set")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--latency-ms", type=float, default=30.0, help="added to each S3 request")
    p.add_argument("--backends", default="", help="restrict to these backends (local,s3)")
    p.add_argument("--work-dir", default="bench-out/real", help="data, repositories, logs")
    p.add_argument("--out", default="bench-out/real.json", help="JSON; .md and .svg beside it")
    p.add_argument("--bbackup-src", default=None, help="run bbackup from this src/ directory")
    p.add_argument("--no-verify", dest="verify", action="store_false", help="skip restore check")
    p.add_argument("--keep", action="store_true", help="keep repositories and caches")
    args = p.parse_args(argv)
    args.workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    for w in args.workloads:
        if w not in bench_workloads.WORKLOAD_BACKENDS:
            p.error(f"unknown workload {w!r}")
    return args


def write_results(run: Run, info: dict[str, Any], workloads: list[Workload], out: Path) -> str:
    """Write the JSON, the Markdown tables (returned) and the SVG chart."""
    result: dict[str, Any] = {
        "machine": info,
        "config": {k: v for k, v in vars(run.args).items() if not k.startswith("_")},
        "cold_cache": run.dropper.works,
        "workloads": [{**asdict(wl), "source": str(wl.source)} for wl in workloads],
        "measurements": [asdict(m) for m in run.measurements],
    }
    result["summary"] = bench_report.summarise(run.measurements)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str))
    table = bench_report.markdown(result)
    out.with_suffix(".md").write_text(table)
    bench_report.write_svg(result, out.with_suffix(".svg"))
    return table


def find_peer(name: str) -> str | None:
    """restic 0.18 and rclone: on PATH, or in get-peers.sh's cache folder."""
    found = shutil.which(name)
    peers = Path("/root/.cache/bbackup-peers/x/usr/bin") / name
    if peers.exists():
        return str(peers)
    return found


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    restic, rclone = find_peer("restic"), find_peer("rclone")
    if restic is None:
        print("restic not found: run `bash ../shared/tools/get-peers.sh`", file=sys.stderr)
        return 2
    work = Path(args.work_dir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    bbackup_exe = [sys.executable, "-m", "bbackup"]
    bench.compile_bbackup(args.bbackup_src)
    run = Run(args, work, restic, rclone, bbackup_exe)
    info = bench.machine_info(restic)
    if rclone:
        out = subprocess.run([rclone, "version"], capture_output=True, text=True, check=False)
        info["rclone"] = out.stdout.splitlines()[0] if out.stdout else ""
    workloads = build_workloads(args, work)
    out_path = Path(args.out)
    try:
        if any("s3" in wl.backends for wl in workloads):
            # The proxy adds its delay per direction: half of a request's added latency.
            run.s3 = bench.S3Env(args.latency_ms / 2)
        for wl in workloads:
            source_manifest = bench_workloads.manifest(wl.source) if args.verify else None
            for repeat in range(args.repeat):
                for backend in wl.backends:
                    run_backend(run, wl, backend, repeat, source_manifest)
                    # Written after every run: a long benchmark that stops late keeps
                    # what it measured.
                    table = write_results(run, info, workloads, out_path)
    finally:
        if run.s3 is not None:
            run.s3.stop()
    table = write_results(run, info, workloads, out_path)
    print("\n" + table)
    print(f"results: {out_path}, {out_path.with_suffix('.md')}, {out_path.with_suffix('.svg')}")
    bad = [m for m in run.measurements if m.exit_code != 0 or m.verified is False]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
