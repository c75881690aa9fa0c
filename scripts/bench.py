"""bbackup vs restic: the same data, the same phases, alternately, on local disk and S3.

    python scripts/bench.py [--size-mb 800] [--repeat 1] [--backends local,s3]
                            [--latency-ms 0] [--out bench-out/results.json]
                            [--chart bench-out/results.png] [--seed 1] [--keep]

1. Generates a reproducible (seeded) data set of about --size-mb: many small files
   (60 % of the file count, 1-64 KiB, 40 % of them text), medium files (100 KiB - 5 MiB,
   30 % text), a few large files (incompressible and compressible), duplicates (copies of
   small and medium files), and an edit set for the third run: ~1 % of the files modified,
   an append to a large file and a few new files.
2. Per backend (a local directory; a moto S3 server on 127.0.0.1 reached through
   scripts/latency_proxy.py, which counts HTTP requests by S3 operation for both tools and
   optionally adds --latency-ms per direction), runs each phase for bbackup and restic one
   after the other (the order alternates between repeats): init, open (list snapshots of
   the empty repository: process start-up plus the password KDF), first backup, unchanged
   re-backup, re-backup after the edits, restore of the latest snapshot into an empty
   directory (verified against the source), and check --read-data.
3. For each tool × phase records wall time, CPU time (user + sys) and peak RSS of the
   child (os.wait4 rusage), repository size (bytes of the files, or the sum of the object
   sizes on S3) and S3 requests; takes the median over --repeat runs; prints a table with
   the ratio bbackup/restic, PASS/MISS per target; writes JSON and a PNG chart (needs
   matplotlib: `pip install matplotlib`; skipped with a note if it is missing).

Both tools run with their defaults and the real password KDF (restic calibrates scrypt
too): the "open" phase shows that fixed cost. restic is initialised with
--repository-version 2 so that it compresses (zstd, "auto"), as bbackup does.
Needs the dev extras for S3 (`pip install -e '.[dev]'`: moto[server], boto3).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
KiB = 1024
MiB = 1024 * KiB

TOOLS = ("bbackup", "restic")
PHASES = (
    "init",
    "open",
    "backup_first",
    "backup_unchanged",
    "backup_edited",
    "restore",
    "check",
)
REQUEST_KEYS = ("PUT", "GET", "HEAD", "LIST", "DELETE", "POST")
PASSWORD = "bench-password-not-secret"
S3_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}

#: (backend, phase, metric, limit on the ratio bbackup/restic, label)
#: phase "*" means the maximum over all phases; metric "requests:PUT" sums all phases.
TARGETS: tuple[tuple[str, str, str, float, str], ...] = (
    ("local", "backup_first", "wall_s", 0.6, "local first backup time"),
    ("local", "backup_unchanged", "wall_s", 0.6, "local unchanged re-backup time"),
    ("local", "restore", "wall_s", 0.7, "local restore time"),
    ("local", "*", "max_rss_mib", 1.0, "local peak RSS (max over phases)"),
    ("local", "backup_edited", "repo_bytes", 1.05, "local repository size (final)"),
    ("s3", "backup_first", "wall_s", 0.8, "S3 first backup time"),
    ("s3", "*", "requests:PUT", 1.0, "S3 PUT requests (all phases)"),
    ("s3", "*", "requests:GET", 1.0, "S3 GET requests (all phases)"),
    ("s3", "*", "requests:LIST", 1.0, "S3 LIST requests (all phases)"),
)


# ---- the data set ------------------------------------------------------------------------


@dataclass(slots=True)
class FileSpec:
    """One file of the data set; its content is a pure function of (kind, size, seed)."""

    rel: str
    group: str  # small | medium | large | dup | new
    kind: str  # bin | text
    size: int
    seed: int
    copy_of: str | None = None


@dataclass(slots=True)
class Edit:
    """One change of the edit set."""

    rel: str
    action: str  # rewrite | patch | append | new
    seed: int
    offset: int = 0
    length: int = 0


@dataclass(slots=True)
class Dataset:
    files: list[FileSpec]
    edits: list[Edit]
    seed: int

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def by_group(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for f in self.files:
            g = out.setdefault(f.group, {"files": 0, "bytes": 0})
            g["files"] += 1
            g["bytes"] += f.size
        return out


def _vocabulary(seed: int) -> list[bytes]:
    rng = random.Random(seed)
    letters = "etaoinshrdlcumwfgypbvkjxqz"
    weights = [26 - i for i in range(26)]
    words = [
        "".join(rng.choices(letters, weights, k=rng.randint(2, 11))).encode() for _ in range(4000)
    ]
    # Line breaks and a little punctuation make it look like prose or logs.
    return words + [b"\n"] * 300 + [b"2024-05-01T12:00:00Z", b"INFO", b"ERROR", b"="] * 20


_VOCAB: list[bytes] = _vocabulary(20240501)


def _text_block(rng: random.Random, size: int) -> bytes:
    out = bytearray()
    while len(out) < size:
        out += b" ".join(rng.choices(_VOCAB, k=max(16, (size - len(out)) // 6 + 16)))
    return bytes(out[:size])


def generate(kind: str, size: int, seed: int, block: int = 8 * MiB) -> Iterator[bytes]:
    """The content of a file, in blocks."""
    rng = random.Random(seed)
    left = size
    while left > 0:
        n = min(block, left)
        yield _text_block(rng, n) if kind == "text" else rng.randbytes(n)
        left -= n


def _lognormalish(rng: random.Random, low: int, high: int) -> int:
    """Log-uniform between low and high: many smaller files, a few big ones."""
    import math

    return int(math.exp(rng.uniform(math.log(low), math.log(high))))


def plan_dataset(size_mb: float, seed: int, small_files: int | None = None) -> Dataset:
    """Decide every file (path, size, kind, seed) and the edit set; writes nothing."""
    rng = random.Random(seed)
    total = int(size_mb * MiB)
    files: list[FileSpec] = []
    tops = ["docs", "src", "photos", "logs", "mail", "projects"]

    def new_seed() -> int:
        return rng.getrandbits(63)

    def place(group: str, index: int, per_dir: int, ext: str) -> str:
        d = index // per_dir
        top = tops[d % len(tops)]
        return f"{top}/{group}-{d:03d}/{group}-{index:05d}{ext}"

    # A few large files: 16 % incompressible (two files), 9 % compressible text.
    if total >= 32 * MiB:
        for rel, kind, share in (
            ("large/disk-image-a.bin", "bin", 10),
            ("large/video-b.bin", "bin", 6),
            ("large/server.log", "text", 9),
        ):
            files.append(FileSpec(rel, "large", kind, total * share // 100, new_seed()))
    # Small files: 60 % of the file count (or --small-files), 1-64 KiB (mean 32.5 KiB).
    # Medium files, 100 KiB - 5 MiB (log-uniform, mean ~1.25 MiB): the rest of the bytes
    # once large files (25 %), duplicates (7 %) and small files are counted.
    mean_medium, mean_small = 1.25 * MiB, 32.5 * KiB
    rest = total * 68 // 100
    if small_files is None:
        # small = 1.5 × (medium + duplicates) so that small files are 60 % of the count
        medium_count = rest / (mean_medium + 1.5 * 1.12 * mean_small)
        small_files = max(10, int(1.5 * 1.12 * medium_count))
    medium_budget = max(0, int(rest - small_files * mean_small))
    medium: list[FileSpec] = []
    used = 0
    while used < medium_budget:
        size = min(_lognormalish(rng, 100 * KiB, 5 * MiB), medium_budget - used + 100 * KiB)
        kind = "text" if rng.random() < 0.3 else "bin"
        rel = place("m", len(medium), 12, ".txt" if kind == "text" else ".dat")
        medium.append(FileSpec(rel, "medium", kind, size, new_seed()))
        used += size
    # Duplicates: copies of small and medium files, about 7 % of the bytes.
    dup_budget = total * 7 // 100
    small: list[FileSpec] = []
    for i in range(small_files):
        kind = "text" if rng.random() < 0.4 else "bin"
        size = rng.randint(1 * KiB, 64 * KiB)
        rel = place("s", i, 40, ".txt" if kind == "text" else ".bin")
        small.append(FileSpec(rel, "small", kind, size, new_seed()))
    dups: list[FileSpec] = []
    used = 0
    pool = small + medium
    while used < dup_budget and pool:
        src = rng.choice(pool)
        rel = f"copies/c-{len(dups) // 30:03d}/{len(dups):05d}-{Path(src.rel).name}"
        dups.append(FileSpec(rel, "dup", src.kind, src.size, src.seed, copy_of=src.rel))
        used += src.size
    files += medium + small + dups

    # The edit set: ~1 % of the small and medium files modified, an append, new files.
    erng = random.Random(seed ^ 0x5EED_ED17)
    edits: list[Edit] = []
    candidates = [f for f in files if f.group in ("small", "medium")]
    n_mod = max(3, round(0.01 * len(files)))
    for f in erng.sample(candidates, min(n_mod, len(candidates))):
        if f.group == "small":
            edits.append(Edit(f.rel, "rewrite", erng.getrandbits(63), 0, f.size))
        else:
            offset = erng.randrange(0, max(1, f.size - 4096))
            edits.append(Edit(f.rel, "patch", erng.getrandbits(63), offset, min(4096, f.size)))
    bins = [f for f in files if f.group == "large" and f.kind == "bin"]
    if bins:
        append = max(1 * MiB, total // 100)
        edits.append(Edit(bins[0].rel, "append", erng.getrandbits(63), bins[0].size, append))
    for i in range(5):
        size = erng.randint(1 * KiB, 64 * KiB)
        edits.append(Edit(f"new/small-{i}.txt", "new", erng.getrandbits(63), 0, size))
    for i in range(2):
        size = erng.randint(200 * KiB, 3 * MiB)
        edits.append(Edit(f"new/medium-{i}.dat", "new", erng.getrandbits(63), 0, size))
    return Dataset(files, edits, seed)


def write_file(root: Path, spec: FileSpec) -> None:
    path = root / spec.rel
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        for block in generate(spec.kind, spec.size, spec.seed):
            f.write(block)


def write_dataset(root: Path, ds: Dataset) -> None:
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    for spec in ds.files:
        write_file(root, spec)


def apply_edits(root: Path, ds: Dataset) -> None:
    specs = {f.rel: f for f in ds.files}
    for e in ds.edits:
        path = root / e.rel
        if e.action == "rewrite":
            kind = specs[e.rel].kind
            write_file(root, FileSpec(e.rel, "small", kind, e.length, e.seed))
        elif e.action == "patch":
            with open(path, "r+b") as f:
                f.seek(e.offset)
                f.write(random.Random(e.seed).randbytes(e.length))
        elif e.action == "append":
            with open(path, "ab") as f:
                for block in generate("bin", e.length, e.seed):
                    f.write(block)
        elif e.action == "new":
            kind = "text" if e.rel.endswith(".txt") else "bin"
            write_file(root, FileSpec(e.rel, "new", kind, e.length, e.seed))


def revert_edits(root: Path, ds: Dataset) -> None:
    """Bring the data back to its generated state (for the next backend or repeat)."""
    specs = {f.rel: f for f in ds.files}
    for e in ds.edits:
        if e.action in ("rewrite", "patch"):
            write_file(root, specs[e.rel])
        elif e.action == "append":
            os.truncate(root / e.rel, specs[e.rel].size)
    shutil.rmtree(root / "new", ignore_errors=True)


def manifest(root: Path) -> dict[str, tuple[int, str]]:
    """Relative path → (size, BLAKE2b) of every regular file under root."""
    out: dict[str, tuple[int, str]] = {}
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            path = os.path.join(dirpath, name)
            h = hashlib.blake2b(digest_size=16)
            with open(path, "rb") as f:
                while block := f.read(1 * MiB):
                    h.update(block)
            out[os.path.relpath(path, root)] = (os.path.getsize(path), h.hexdigest())
    return out


# ---- running the tools ----------------------------------------------------------------


@dataclass(slots=True)
class Measurement:
    tool: str
    backend: str
    phase: str
    repeat: int
    exit_code: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    user_s: float = 0.0
    sys_s: float = 0.0
    max_rss_mib: float = 0.0
    repo_bytes: int = 0
    requests: dict[str, int] = field(default_factory=dict)
    self_reported_requests: dict[str, int] | None = None
    summary: dict[str, Any] | None = None
    verified: bool | None = None
    #: 1-minute load average when the phase started: other work on the machine skews times.
    loadavg: float = 0.0
    log: str = ""


#: Runs one command and reports its rusage. The tools are started from this small helper
#: and not from the benchmark process itself: Linux keeps the parent's memory high-water
#: mark as a floor of the child's ru_maxrss across fork/exec, and the benchmark process
#: (which hosts moto and its objects) is large. ru_maxrss is the largest single process;
#: a tool that works in several processes (bbackup's seal workers, its totals scan) holds
#: more, so the helper also samples the process tree every 0.1 s: the command's own
#: resident memory plus its descendants' private memory (their pages shared with it, the
#: interpreter and libraries, counted once), and reports the larger of the two peaks.
_SPAWN_HELPER = """
import json, os, sys, threading, time
out, cmd = sys.argv[1], sys.argv[2:]
page_kib = os.sysconf("SC_PAGE_SIZE") // 1024
def private_kib(p):
    total = 0
    with open(f"/proc/{p}/smaps_rollup") as f:
        for line in f:
            if line.startswith(("Private_Clean:", "Private_Dirty:")):
                total += int(line.split()[1])
    return total
def tree_kib(root):
    total, stack = 0, [root]
    while stack:
        p = stack.pop()
        try:
            if p == root:
                with open(f"/proc/{p}/statm") as f:
                    total += int(f.read().split()[1]) * page_kib
            else:
                total += private_kib(p)
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/children") as f:
                    stack += [int(c) for c in f.read().split()]
        except (OSError, ValueError):
            pass
    return total
peak, done = [0], threading.Event()
def sample():
    while not done.wait(0.1):
        peak[0] = max(peak[0], tree_kib(pid))
start = time.perf_counter()
pid = os.posix_spawnp(cmd[0], cmd, os.environ)
sampler = threading.Thread(target=sample, daemon=True)
sampler.start()
_, status, ru = os.wait4(pid, 0)
wall = time.perf_counter() - start
done.set()
sampler.join()
with open(out, "w") as f:
    json.dump({"wall": wall, "utime": ru.ru_utime, "stime": ru.ru_stime,
               "maxrss_kib": max(ru.ru_maxrss, peak[0]),
               "code": os.waitstatus_to_exitcode(status)}, f)
sys.exit(0)
"""


@dataclass(slots=True)
class Usage:
    exit_code: int
    wall_s: float
    user_s: float
    sys_s: float
    max_rss_kib: int


def run_measured(
    cmd: list[str], env: dict[str, str], log_dir: Path, name: str
) -> tuple[Usage, str]:
    """Run cmd through the spawn helper; return its usage and its stdout."""
    out_path, err_path = log_dir / f"{name}.out", log_dir / f"{name}.err"
    usage_path = log_dir / f"{name}.usage.json"
    helper = [sys.executable, "-S", "-E", "-c", _SPAWN_HELPER, str(usage_path), *cmd]
    # Start every measured command with nothing left to write back: otherwise the tool
    # that runs right after the data set is written, or after the other tool's backup,
    # competes with the kernel flushing those bytes, which favours whoever goes second.
    os.sync()
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        subprocess.run(helper, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env)
    raw = json.loads(usage_path.read_text())
    usage = Usage(raw["code"], raw["wall"], raw["utime"], raw["stime"], raw["maxrss_kib"])
    return usage, out_path.read_text(errors="replace")


def last_json(stdout: str, key: str, value: str) -> dict[str, Any] | None:
    for line in reversed(stdout.splitlines()):
        line = line.strip()
        if not line.startswith("{"):
            continue
        with contextlib.suppress(ValueError):
            obj = json.loads(line)
            if isinstance(obj, dict) and obj.get(key) == value:
                return obj
    return None


class Tool:
    """How to run one tool's phases against one repository."""

    name = ""

    def __init__(self, repo: str, cache: Path, base_env: dict[str, str]) -> None:
        self.repo = repo
        self.cache = cache
        self.env = dict(base_env)

    def command(self, phase: str, data: Path, target: Path) -> list[str]:
        raise NotImplementedError

    def parse_summary(self, phase: str, stdout: str) -> dict[str, Any] | None:
        return None


class Bbackup(Tool):
    name = "bbackup"

    def __init__(
        self, repo: str, cache: Path, base_env: dict[str, str], exe: list[str], s3: str | None
    ) -> None:
        super().__init__(repo, cache, base_env)
        self.exe = exe
        self.env.update(BBACKUP_PASSWORD=PASSWORD, BBACKUP_CACHE_DIR=str(cache))
        if s3:
            self.env.update(S3_CREDENTIALS, BBACKUP_S3_ENDPOINT=s3)

    def command(self, phase: str, data: Path, target: Path) -> list[str]:
        common = ["--repo", self.repo, "--json"]
        if phase == "init":
            return [*self.exe, "init", *common]
        if phase == "open":
            return [*self.exe, "snapshots", *common]
        if phase.startswith("backup"):
            return [*self.exe, "backup", *common, "--host", "bench", str(data)]
        if phase == "restore":
            return [*self.exe, "restore", "latest", *common, "--target", str(target)]
        if phase == "check":
            return [*self.exe, "check", "--read-data", *common]
        raise ValueError(phase)

    def parse_summary(self, phase: str, stdout: str) -> dict[str, Any] | None:
        if phase.startswith("backup") or phase == "restore":
            return last_json(stdout, "event", "summary")
        if phase == "check":
            return last_json(stdout, "event", "check")
        return None


class Restic(Tool):
    name = "restic"

    def __init__(
        self, repo: str, cache: Path, base_env: dict[str, str], exe: str, s3: bool
    ) -> None:
        super().__init__(repo, cache, base_env)
        self.exe = exe
        self.env.update(RESTIC_PASSWORD=PASSWORD, RESTIC_REPOSITORY=repo)
        self.env["RESTIC_CACHE_DIR"] = str(cache)
        self.extra = ["-o", "s3.region=us-east-1"] if s3 else []
        if s3:
            self.env.update(S3_CREDENTIALS)

    def command(self, phase: str, data: Path, target: Path) -> list[str]:
        base = [self.exe, *self.extra]
        if phase == "init":
            return [*base, "init", "--repository-version", "2"]
        if phase == "open":
            return [*base, "snapshots", "--json"]
        if phase.startswith("backup"):
            return [*base, "backup", "--json", "--host", "bench", str(data)]
        if phase == "restore":
            return [*base, "restore", "latest", "--target", str(target)]
        if phase == "check":
            return [*base, "check", "--read-data"]
        raise ValueError(phase)

    def parse_summary(self, phase: str, stdout: str) -> dict[str, Any] | None:
        if phase.startswith("backup"):
            return last_json(stdout, "message_type", "summary")
        return None


def clean_env() -> dict[str, str]:
    drop = ("BBACKUP_", "RESTIC_", "AWS_")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


def dir_bytes(path: Path) -> int:
    total = 0
    for dirpath, _dirs, names in os.walk(path):
        for name in names:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


class S3Env:
    """moto on 127.0.0.1 behind the counting (and optionally slow) proxy."""

    def __init__(self, latency_ms: float) -> None:
        sys.path.insert(0, str(ROOT / "tests"))
        sys.path.insert(0, str(HERE))
        from latency_proxy import LatencyProxy
        from s3_server import MotoEndpoint

        self.moto = MotoEndpoint()
        host_port = self.moto.url.removeprefix("http://")
        host, _, port = host_port.rpartition(":")
        self.proxy = LatencyProxy(host, int(port), latency_ms=latency_ms)
        self.proxy.start()
        self.url = self.proxy.url

    def object_bytes(self, bucket: str, prefix: str) -> int:
        paginator = self.moto.client.get_paginator("list_objects_v2")
        return sum(
            entry["Size"]
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix)
            for entry in page.get("Contents", ())
        )

    def stop(self) -> None:
        self.proxy.stop()
        self.moto.stop()


# ---- the benchmark -------------------------------------------------------------------


@dataclass
class Context:
    args: argparse.Namespace
    work: Path
    data: Path
    ds: Dataset
    bbackup_exe: list[str]
    restic_exe: str | None
    s3: S3Env | None = None
    measurements: list[Measurement] = field(default_factory=list)
    source_manifest: dict[str, tuple[int, str]] | None = None


def run_backend(ctx: Context, backend: str, repeat: int) -> None:
    args = ctx.args
    run_dir = ctx.work / f"{backend}-r{repeat}"
    shutil.rmtree(run_dir, ignore_errors=True)
    logs = run_dir / "logs"
    logs.mkdir(parents=True)
    base_env = clean_env()
    tools: dict[str, Tool] = {}
    bucket = f"bench-{backend}-r{repeat}-{os.getpid()}"
    if backend == "s3":
        assert ctx.s3 is not None
        ctx.s3.moto.create_bucket(bucket)
    for name in args.tools:
        cache = run_dir / "cache" / name
        if backend == "local":
            repo = str(run_dir / "repo" / name)
        elif name == "bbackup":
            repo = f"s3://{bucket}/bbackup"
        else:
            assert ctx.s3 is not None
            repo = f"s3:{ctx.s3.url}/{bucket}/restic"
        if name == "bbackup":
            s3url = ctx.s3.url if backend == "s3" and ctx.s3 else None
            tools[name] = Bbackup(repo, cache, base_env, ctx.bbackup_exe, s3url)
            if args.bbackup_src:
                tools[name].env["PYTHONPATH"] = str(Path(args.bbackup_src).resolve())
        else:
            assert ctx.restic_exe is not None
            tools[name] = Restic(repo, cache, base_env, ctx.restic_exe, backend == "s3")

    def repo_bytes(name: str) -> int:
        if backend == "local":
            return dir_bytes(Path(tools[name].repo))
        assert ctx.s3 is not None
        return ctx.s3.object_bytes(bucket, f"{name}/")

    order = list(args.tools) if repeat % 2 == 0 else list(reversed(args.tools))
    failed: set[str] = set()
    edited = False
    try:
        for phase in PHASES:
            if phase == "backup_edited" and not edited:
                apply_edits(ctx.data, ctx.ds)
                edited = True
                if args.verify:
                    ctx.source_manifest = manifest(ctx.data)
            for name in order:
                if name in failed:
                    continue
                tool = tools[name]
                target = run_dir / "restore" / name
                if phase == "restore":
                    shutil.rmtree(target, ignore_errors=True)
                    target.mkdir(parents=True)
                cmd = tool.command(phase, ctx.data, target)
                if ctx.s3 is not None:
                    ctx.s3.proxy.stats.reset()
                print(f"  [{backend} r{repeat}] {name:8s} {phase:17s}", end="", flush=True)
                load = os.getloadavg()[0]
                usage, stdout = run_measured(cmd, tool.env, logs, f"{name}-{phase}")
                code, wall = usage.exit_code, usage.wall_s
                m = Measurement(name, backend, phase, repeat, exit_code=code, wall_s=wall)
                m.loadavg = load
                m.user_s, m.sys_s = usage.user_s, usage.sys_s
                m.cpu_s = m.user_s + m.sys_s
                m.max_rss_mib = usage.max_rss_kib / 1024  # KiB on Linux
                m.log = str(logs / f"{name}-{phase}")
                if backend == "s3" and ctx.s3 is not None:
                    m.requests = ctx.s3.proxy.stats.snapshot()
                m.summary = tool.parse_summary(phase, stdout)
                if m.summary and isinstance(m.summary.get("requests"), dict):
                    m.self_reported_requests = m.summary["requests"]
                m.repo_bytes = repo_bytes(name)
                if phase == "restore" and code == 0 and args.verify:
                    m.verified = verify_restore(ctx, target)
                if phase == "restore":
                    shutil.rmtree(target, ignore_errors=True)
                ctx.measurements.append(m)
                note = "" if code == 0 else f"  EXIT {code} (see {m.log}.err)"
                if m.verified is False:
                    note += "  RESTORE MISMATCH"
                print(
                    f" {wall:8.2f} s  cpu {m.cpu_s:8.2f} s  rss {m.max_rss_mib:7.1f} MiB"
                    f"  repo {m.repo_bytes / MiB:8.1f} MiB"
                    + (f"  req {_req_text(m.requests)}" if m.requests else "")
                    + f"  load {load:.1f}"
                    + note,
                    flush=True,
                )
                if code != 0:
                    failed.add(name)
                    err = (logs / f"{name}-{phase}.err").read_text(errors="replace")
                    print("    " + "\n    ".join(err.strip().splitlines()[-8:]), flush=True)
    finally:
        if edited:
            revert_edits(ctx.data, ctx.ds)
        if backend == "s3" and ctx.s3 is not None:
            with contextlib.suppress(Exception):
                ctx.s3.moto.remove_bucket(bucket)
        if not args.keep:
            shutil.rmtree(run_dir / "repo", ignore_errors=True)
            shutil.rmtree(run_dir / "cache", ignore_errors=True)
            shutil.rmtree(run_dir / "restore", ignore_errors=True)


def _req_text(req: dict[str, int]) -> str:
    return " ".join(f"{k}={req.get(k, 0)}" for k in ("PUT", "GET", "HEAD", "LIST") if k in req)


def verify_restore(ctx: Context, target: Path) -> bool:
    restored_root = target / str(ctx.data).lstrip("/")
    if not restored_root.is_dir():
        return False
    got = manifest(restored_root)
    return got == ctx.source_manifest


# ---- summarising -------------------------------------------------------------------------


def metric_value(m: Measurement, metric: str) -> float:
    if metric.startswith("requests:"):
        return float(m.requests.get(metric.split(":", 1)[1], 0))
    return float(getattr(m, metric))


def median_of(ms: list[Measurement], metric: str) -> float | None:
    values = [metric_value(m, metric) for m in ms if m.exit_code == 0]
    return statistics.median(values) if values else None


def summarise(measurements: list[Measurement]) -> dict[str, Any]:
    """backend → phase → tool → metric → median over repeats; plus ratios."""
    metrics = ["wall_s", "cpu_s", "max_rss_mib", "repo_bytes"] + [
        f"requests:{k}" for k in REQUEST_KEYS
    ]
    out: dict[str, Any] = {}
    for backend in sorted({m.backend for m in measurements}):
        per_phase: dict[str, Any] = {}
        for phase in PHASES:
            row: dict[str, Any] = {}
            for tool in TOOLS:
                ms = [
                    m
                    for m in measurements
                    if (m.backend, m.phase, m.tool) == (backend, phase, tool)
                ]
                if ms:
                    row[tool] = {k: median_of(ms, k) for k in metrics}
                    row[tool]["failed"] = sum(m.exit_code != 0 for m in ms)
            if "bbackup" in row and "restic" in row:
                shown = [k for k in metrics if k.startswith(("wall", "cpu", "max", "repo"))]
                row["ratio"] = {k: _ratio(row["bbackup"][k], row["restic"][k]) for k in shown}
                # The two tools of one repeat ran back to back: the median of those paired
                # ratios is less sensitive to load that drifts between repeats.
                row["ratio_paired_median"] = {
                    k: _paired(measurements, backend, phase, k) for k in shown
                }
            per_phase[phase] = row
        out[backend] = per_phase
    return out


def _paired(measurements: list[Measurement], backend: str, phase: str, metric: str) -> float | None:
    by_repeat: dict[int, dict[str, float]] = {}
    for m in measurements:
        if (m.backend, m.phase) == (backend, phase) and m.exit_code == 0:
            by_repeat.setdefault(m.repeat, {})[m.tool] = metric_value(m, metric)
    ratios = [
        r
        for pair in by_repeat.values()
        if (r := _ratio(pair.get("bbackup"), pair.get("restic"))) is not None
    ]
    return statistics.median(ratios) if ratios else None


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def target_results(summary: dict[str, Any]) -> list[dict[str, Any]]:
    results = []
    for backend, phase, metric, limit, label in TARGETS:
        phases = summary.get(backend, {})
        values: dict[str, float | None] = {}
        for tool in TOOLS:
            if phase == "*":
                vals = [
                    row[tool][metric]
                    for row in phases.values()
                    if tool in row and row[tool][metric] is not None
                ]
                if metric.startswith("requests:"):
                    values[tool] = sum(vals) if vals else None
                else:
                    values[tool] = max(vals) if vals else None
            else:
                row = phases.get(phase, {})
                values[tool] = row.get(tool, {}).get(metric)
        ratio = _ratio(values.get("bbackup"), values.get("restic"))
        if ratio is None and values.get("bbackup") == 0 and values.get("restic") == 0:
            ratio = 1.0
        status = "n/a" if ratio is None else ("PASS" if ratio <= limit else "MISS")
        paired = None
        if phase != "*":
            paired = phases.get(phase, {}).get("ratio_paired_median", {}).get(metric)
        results.append(
            {
                "label": label,
                "backend": backend,
                "phase": phase,
                "metric": metric,
                "bbackup": values.get("bbackup"),
                "restic": values.get("restic"),
                "ratio": ratio,
                "ratio_paired_median": paired,
                "limit": limit,
                "status": status,
            }
        )
    return results


def _fmt(v: float | None, unit: str = "") -> str:
    if v is None:
        return "-"
    if unit == "MiB_bytes":
        return f"{v / MiB:.1f}"
    if unit == "int":
        return f"{v:.0f}"
    if abs(v) >= 100:
        return f"{v:.0f}"
    return f"{v:.2f}"


def format_table(summary: dict[str, Any]) -> str:
    """A Markdown table per backend (it prints fine on a terminal too)."""
    lines: list[str] = []
    for backend, phases in summary.items():
        s3 = backend == "s3"
        lines.append(f"### {backend}")
        lines.append("")
        head = (
            "| phase | wall s bb | wall s restic | ratio | CPU s bb | CPU s restic | ratio "
            "| RSS MiB bb | RSS MiB restic | ratio | repo MiB bb | repo MiB restic | ratio |"
        )
        if s3:
            head += " PUT/GET/LIST/HEAD bb | PUT/GET/LIST/HEAD restic |"
        lines.append(head)
        lines.append("|" + "---|" * (head.count("|") - 1))
        for phase, row in phases.items():
            if not row:
                continue
            b, r, q = row.get("bbackup", {}), row.get("restic", {}), row.get("ratio", {})
            cells = [phase]
            for metric, unit in (
                ("wall_s", ""),
                ("cpu_s", ""),
                ("max_rss_mib", ""),
                ("repo_bytes", "MiB_bytes"),
            ):
                cells += [_fmt(b.get(metric), unit), _fmt(r.get(metric), unit)]
                cells.append(_fmt(q.get(metric)))
            if s3:
                for side in (b, r):
                    counts = [side.get(f"requests:{k}") for k in ("PUT", "GET", "LIST", "HEAD")]
                    cells.append("/".join(_fmt(c, "int") for c in counts))
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def format_targets(results: list[dict[str, Any]]) -> str:
    lines = [
        "| target | bbackup | restic | ratio | paired ratio | limit | result |",
        "|---|---|---|---|---|---|---|",
    ]
    for t in results:
        unit = {"repo_bytes": "MiB_bytes"}.get(t["metric"], "")
        if t["metric"].startswith("requests:"):
            unit = "int"
        lines.append(
            f"| {t['label']} | {_fmt(t['bbackup'], unit)} | {_fmt(t['restic'], unit)} "
            f"| {_fmt(t['ratio'])} | {_fmt(t.get('ratio_paired_median'))} "
            f"| ≤ {t['limit']} | {t['status']} |"
        )
    return "\n".join(lines)


def draw_chart(summary: dict[str, Any], targets: list[dict[str, Any]], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(
            "chart skipped: matplotlib is not installed (pip install matplotlib)",
            file=sys.stderr,
        )
        return False
    backends = list(summary)
    fig, axes = plt.subplots(
        1, len(backends) + 1, figsize=(6 * (len(backends) + 1), 5), squeeze=False
    )
    colors = {"bbackup": "#1f77b4", "restic": "#ff7f0e"}
    for ax, backend in zip(axes[0], backends, strict=False):
        phases = [p for p in PHASES if summary[backend].get(p)]
        width = 0.4
        for i, tool in enumerate(TOOLS):
            vals = [(summary[backend][p].get(tool) or {}).get("wall_s") or 0 for p in phases]
            xs = [x + (i - 0.5) * width for x in range(len(phases))]
            ax.bar(xs, vals, width, label=tool, color=colors[tool])
        ax.set_xticks(range(len(phases)))
        ax.set_xticklabels(phases, rotation=30, ha="right")
        ax.set_ylabel("wall time (s)")
        ax.set_title(f"{backend}: wall time per phase (median)")
        ax.legend()
    ax = axes[0][-1]
    shown = [t for t in targets if t["ratio"] is not None]
    labels = [t["label"] for t in shown]
    ratios = [t["ratio"] for t in shown]
    bar_colors = ["#2ca02c" if t["status"] == "PASS" else "#d62728" for t in shown]
    ys = range(len(shown))
    ax.barh(list(ys), ratios, color=bar_colors)
    for y, t in zip(ys, shown, strict=True):
        ax.plot([t["limit"], t["limit"]], [y - 0.4, y + 0.4], color="black", linewidth=2)
        ax.text(t["ratio"], y, f" {t['ratio']:.2f}", va="center", fontsize=8)
    ax.set_yticks(list(ys))
    ax.set_yticklabels(labels, fontsize=8)
    ax.invert_yaxis()
    ax.axvline(1.0, color="grey", linestyle=":")
    ax.set_xlabel("bbackup / restic (black tick: target; green PASS, red MISS)")
    ax.set_title("ratios against targets")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# ---- environment -------------------------------------------------------------------------


def machine_info(restic: str | None) -> dict[str, Any]:
    info: dict[str, Any] = {
        "nproc": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["ram_gib"] = round(int(line.split()[1]) / 1024 / 1024, 1)
    if restic:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([restic, "version"], capture_output=True, text=True, timeout=30)
            info["restic"] = out.stdout.strip()
    with contextlib.suppress(Exception):
        from bbackup import __version__

        info["bbackup"] = __version__
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        info["git_commit"] = out.stdout.strip()
    return info


def ensure_restic() -> str | None:
    found = shutil.which("restic")
    if found:
        return found
    if os.geteuid() != 0:
        print(
            "restic is not installed and this is not root: install it "
            "(Debian/Ubuntu: sudo apt-get install -y restic) or pass --tools bbackup",
            file=sys.stderr,
        )
        return None
    print("installing restic: apt-get install -y restic", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update"], check=False, env=env)
    subprocess.run(["apt-get", "install", "-y", "restic"], check=False, env=env)
    return shutil.which("restic")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size-mb", type=float, default=800, help="data set size (default 800)")
    p.add_argument("--seed", type=int, default=1, help="data set seed (default 1)")
    p.add_argument(
        "--small-files", type=int, default=None, help="small files (default: 60%% of the count)"
    )
    p.add_argument("--repeat", type=int, default=1, help="runs per backend; median (default 1)")
    p.add_argument("--backends", default="local,s3", help="comma list: local,s3")
    p.add_argument("--tools", default="bbackup,restic", help="comma list: bbackup,restic")
    p.add_argument("--latency-ms", type=float, default=0.0, help="added per direction on S3")
    p.add_argument("--work-dir", default="bench-out/work", help="data, repositories, logs")
    p.add_argument("--out", default="bench-out/results.json", help="JSON results")
    p.add_argument("--chart", default=None, help="PNG chart (default: beside --out)")
    p.add_argument("--bbackup", default=None, help="bbackup command (default: python -m bbackup)")
    p.add_argument(
        "--bbackup-src",
        default=None,
        help="run bbackup from this src/ directory (PYTHONPATH), e.g. a `git archive` export",
    )
    p.add_argument("--no-verify", dest="verify", action="store_false", help="skip restore check")
    p.add_argument("--keep", action="store_true", help="keep repositories and caches")
    args = p.parse_args(argv)
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    args.tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    for b in args.backends:
        if b not in ("local", "s3"):
            p.error(f"unknown backend {b!r}")
    for t in args.tools:
        if t not in TOOLS:
            p.error(f"unknown tool {t!r}")
    return args


def compile_bbackup(src: str | None) -> None:
    """Byte-compile the bbackup being measured, as `pip install` does for a user.

    Otherwise, with PYTHONDONTWRITEBYTECODE set (as on the benchmark machine), every run
    would compile the modules changed since the last compilation: ~50 ms per command.
    """
    import compileall

    if src:
        root = Path(src).resolve() / "bbackup"
    else:
        import bbackup

        root = Path(bbackup.__file__).resolve().parent
    compileall.compile_dir(str(root), quiet=1)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    restic = ensure_restic() if "restic" in args.tools else None
    if "restic" in args.tools and restic is None:
        args.tools = [t for t in args.tools if t != "restic"]
        print("running bbackup only: no ratios", file=sys.stderr)
    bbackup_exe = args.bbackup.split() if args.bbackup else [sys.executable, "-m", "bbackup"]
    if not args.bbackup and "bbackup" in args.tools:
        compile_bbackup(args.bbackup_src)
    work = Path(args.work_dir).resolve()
    data = work / "data"
    work.mkdir(parents=True, exist_ok=True)

    ds = plan_dataset(args.size_mb, args.seed, args.small_files)
    stamp = work / "data.stamp"
    want = json.dumps(
        {"size_mb": args.size_mb, "seed": args.seed, "files": [(f.rel, f.size) for f in ds.files]}
    )
    if data.is_dir() and stamp.exists() and stamp.read_text() == want:
        print(f"reusing data set in {data}", flush=True)
        revert_edits(data, ds)
    else:
        stamp.unlink(missing_ok=True)
        t0 = time.perf_counter()
        print(f"generating {ds.total_bytes / MiB:.0f} MiB in {len(ds.files)} files ...", flush=True)
        write_dataset(data, ds)
        stamp.write_text(want)
        print(f"  done in {time.perf_counter() - t0:.1f} s", flush=True)
    groups = ds.by_group()
    for g, v in groups.items():
        print(f"  {g:7s} {v['files']:6d} files {v['bytes'] / MiB:9.1f} MiB")

    ctx = Context(args, work, data, ds, bbackup_exe, restic)
    info = machine_info(restic)
    print(f"machine: {info}", flush=True)
    try:
        if "s3" in args.backends:
            ctx.s3 = S3Env(args.latency_ms)
            print(f"S3: moto {ctx.s3.moto.url} via proxy {ctx.s3.url}", flush=True)
        for repeat in range(args.repeat):
            for backend in args.backends:
                run_backend(ctx, backend, repeat)
    finally:
        if ctx.s3 is not None:
            ctx.s3.stop()

    summary = summarise(ctx.measurements)
    targets = target_results(summary)
    table = format_table(summary)
    print()
    print(table)
    print(format_targets(targets))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "machine": info,
        "config": {
            k: v for k, v in vars(args).items() if isinstance(v, str | int | float | list | None)
        },
        "dataset": {
            "bytes": ds.total_bytes,
            "files": len(ds.files),
            "groups": groups,
            "edits": [asdict(e) for e in ds.edits],
        },
        "summary": summary,
        "targets": targets,
        "measurements": [asdict(m) for m in ctx.measurements],
    }
    out.write_text(json.dumps(result, indent=2, default=str))
    print(f"\nresults: {out}")
    chart = Path(args.chart) if args.chart else out.with_suffix(".png")
    if draw_chart(summary, targets, chart):
        print(f"chart: {chart}")
    failures = [m for m in ctx.measurements if m.exit_code != 0 or m.verified is False]
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
