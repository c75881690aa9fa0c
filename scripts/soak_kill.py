"""A seeded, randomised SIGKILL soak: backup, prune, forget and restore killed at random
storage operations, with random edits to the source between steps, on a local directory
or an S3 bucket on a moto server. After every step `check --read-data` must pass and every
live snapshot must restore byte for byte against the sha256 manifest recorded for it.

    python scripts/soak_kill.py --backend local --minutes 5 --seed 1
    python scripts/soak_kill.py --backend s3 --iterations 50

The kill comes from tests/kill_runner.py (the real CLI, killed at the N-th storage
operation of a kind). Prints a JSON summary; exits 1 on the first broken invariant,
leaving its work directory for inspection.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KILL_RUNNER = ROOT / "tests" / "kill_runner.py"
PASSWORD = "soak password"
CHEAPEST_KDF = ("--kdf-memory", "8", "--kdf-time", "1")
KiB = 1024

#: Storage operations each command makes, as kill_runner kill points (without N and WHEN).
KILL_OPS = {
    "backup": ["put:locks/", "put:data/", "put:tree/", "put:index/", "put:snapshots/", "delete:"],
    "prune": [
        "put:data/",
        "put:index/",
        "delete:index/",
        "delete:data/",
        "delete:tree/",
        "delete:",
    ],
    "forget": ["delete:snapshots/", "delete:locks/", "put:locks/"],
    "restore": ["get:data/", "get:tree/", "get:"],
}
COMMANDS = ["backup", "backup", "backup", "prune", "forget", "restore"]


class InvariantBroken(Exception):
    """check failed, a snapshot is gone or restores wrong, or a re-run failed."""


@dataclass
class Soak:
    """One soak run: the repository, the source it backs up, and what was seen."""

    url: str
    work: Path
    rng: random.Random
    env: dict[str, str]
    src: Path = field(init=False)
    #: Live snapshot ID → {path relative to src: sha256 hex} when it was taken.
    manifests: dict[str, dict[str, str]] = field(default_factory=dict)
    killed: Counter[str] = field(default_factory=Counter)
    not_hit: Counter[str] = field(default_factory=Counter)
    points: Counter[str] = field(default_factory=Counter)
    restores_verified: int = 0
    steps: int = 0

    def __post_init__(self) -> None:
        self.src = self.work / "src"
        self.src.mkdir()

    # ---- running bbackup --------------------------------------------------------------

    def run(self, *args: str | Path, kill: str | None = None) -> subprocess.CompletedProcess[str]:
        if kill is None:
            cmd = [sys.executable, "-m", "bbackup", *map(str, args)]
        else:
            trace = self.work / "trace"
            trace.unlink(missing_ok=True)
            cmd = [sys.executable, str(KILL_RUNNER), "--kill", kill, "--trace", str(trace)]
            cmd += ["--", *map(str, args)]
        return subprocess.run(
            cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, env=self.env, timeout=300
        )

    def ok(self, *args: str | Path) -> str:
        done = self.run(*args)
        if done.returncode != 0:
            raise InvariantBroken(
                f"bbackup {' '.join(map(str, args))}: exit {done.returncode}\n"
                f"{done.stdout}{done.stderr}"
            )
        return done.stdout

    def live_snapshots(self) -> set[str]:
        listed = json.loads(self.ok("snapshots", "-r", self.url, "--json"))
        return {s["id"] for s in listed}

    # ---- the source ---------------------------------------------------------------------

    def edit_source(self) -> None:
        """Add, change or remove a few files; sizes from 0 to ~1.5 MiB."""
        files = [p for p in self.src.rglob("*") if p.is_file()]
        for _ in range(self.rng.randint(1, 4)):
            action = self.rng.choice(["add", "add", "change", "remove"]) if files else "add"
            if action == "add":
                path = (
                    self.src
                    / self.rng.choice(["", "a/", "a/b/", "c/"])
                    / f"f{self.rng.randrange(10**6)}"
                )
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(
                    self.rng.randbytes(self.rng.choice([0, 100, 40 * KiB, 700 * KiB, 1500 * KiB]))
                )
                files.append(path)
            elif action == "change":
                path = self.rng.choice(files)
                data = bytearray(path.read_bytes() or b"x")
                data[self.rng.randrange(len(data))] ^= 0xFF
                path.write_bytes(bytes(data) + self.rng.randbytes(self.rng.randint(0, 50 * KiB)))
            else:
                path = files.pop(self.rng.randrange(len(files)))
                path.unlink()

    def manifest_of(self, root: Path) -> dict[str, str]:
        return {
            p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*"))
            if p.is_file()
        }

    # ---- one step -----------------------------------------------------------------------

    def step(self) -> None:
        self.steps += 1
        command = self.rng.choice(COMMANDS)
        op = self.rng.choice(KILL_OPS[command])
        # Mostly early operations: most commands make only a few of each kind.
        n = self.rng.choice([1, 1, 1, 2, 2, 3, 4])
        point = f"{op}:{n}:{self.rng.choice(['before', 'after'])}"
        before = self.live_snapshots()
        if command == "backup":
            self.edit_source()
            args: list[str | Path] = ["backup", "-r", self.url, self.src]
        elif command == "prune":
            args = ["prune", "-r", self.url, "--grace", "0s"]
            args += self.rng.choice([[], ["--max-unused", "0%"]])
        elif command == "forget":
            args = ["forget", "-r", self.url, "--keep-last", str(self.rng.randint(1, 3))]
        else:
            if not before:
                return
            snapshot_id = self.rng.choice(sorted(before))
            area = self.work / f"restore-{self.steps}"
            area.mkdir()
            (area / "neighbour").write_bytes(b"untouched")
            args = ["restore", snapshot_id, "-r", self.url, "--target", area / "target"]
        args += self.rng.choice([[], ["--connections", "2"]])
        done = self.run(*args, kill=point)
        trace = (
            (self.work / "trace").read_text().splitlines() if (self.work / "trace").exists() else []
        )
        if done.returncode == -9:
            if not trace or not trace[-1].startswith("KILLED"):
                raise InvariantBroken(f"{command} died at {point} without kill_runner")
            self.killed[command] += 1
            self.points[f"{command} {point}"] += 1
        elif done.returncode == 0:
            self.not_hit[command] += 1
        else:
            raise InvariantBroken(f"{command} {point}: exit {done.returncode}\n{done.stderr}")
        after = self.live_snapshots()
        if command == "backup":
            for new in after - before:  # committed, even if killed before unlocking
                self.manifests[new] = self.manifest_of(self.src)
        if command != "forget" and not before <= after:
            raise InvariantBroken(f"{command} {point} lost snapshots {before - after}")
        self.verify(after)
        if done.returncode == -9:  # the same command again, to the end
            self.ok(*args)
            after_rerun = self.live_snapshots()
            if command == "backup":
                for new in after_rerun - after:
                    self.manifests[new] = self.manifest_of(self.src)
            if command == "restore":
                area = self.work / f"restore-{self.steps}"
                if sorted(p.name for p in area.iterdir()) != ["neighbour", "target"]:
                    raise InvariantBroken("restore touched something outside its target")
                if (area / "neighbour").read_bytes() != b"untouched":
                    raise InvariantBroken("restore changed a file beside its target")
                self.verify_restore(args[1], area / "target", reuse=True)
            self.verify(after_rerun)
        for gone in set(self.manifests) - self.live_snapshots():
            del self.manifests[gone]
        shutil.rmtree(self.work / f"restore-{self.steps}", ignore_errors=True)

    def verify(self, live: set[str]) -> None:
        """check --read-data passes and every live snapshot restores exactly."""
        self.ok("check", "-r", self.url, "--read-data")
        unknown = live - set(self.manifests)
        if unknown:
            raise InvariantBroken(f"snapshots nobody made: {unknown}")
        for snapshot_id in sorted(live):
            self.verify_restore(snapshot_id, self.work / "verify", reuse=False)

    def verify_restore(self, snapshot_id: str | Path, target: Path, *, reuse: bool) -> None:
        if not reuse:
            shutil.rmtree(target, ignore_errors=True)
            self.ok("restore", snapshot_id, "-r", self.url, "--target", target)
        restored = target / os.path.abspath(self.src).lstrip("/")
        got = self.manifest_of(restored) if restored.exists() else {}
        if got != self.manifests[str(snapshot_id)]:
            raise InvariantBroken(f"snapshot {snapshot_id} restores differently")
        self.restores_verified += 1
        shutil.rmtree(target, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["local", "s3"], default="local")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--iterations", type=int, default=0, help="0: until --minutes pass")
    parser.add_argument("--minutes", type=float, default=5.0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix=f"soak-kill-{args.backend}-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BBACKUP_"))}
    env |= {"BBACKUP_PASSWORD": PASSWORD, "XDG_CACHE_HOME": str(work / "cache")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    endpoint = None
    if args.backend == "s3":
        sys.path.insert(0, str(ROOT / "tests"))
        from s3_server import TEST_CREDENTIALS, MotoEndpoint

        endpoint = MotoEndpoint()
        env |= TEST_CREDENTIALS | {"BBACKUP_S3_ENDPOINT": endpoint.url}
        url = f"s3://{endpoint.create_bucket()}/repo"
    else:
        url = str(work / "repo")
    soak = Soak(url, work, random.Random(args.seed), env)
    started = time.monotonic()
    failure = None
    try:
        soak.ok("init", "-r", url, "--pack-size", "4", *CHEAPEST_KDF)
        while (
            soak.steps < args.iterations
            if args.iterations
            else time.monotonic() - started < args.minutes * 60
        ):
            soak.step()
    except InvariantBroken as exc:
        failure = f"step {soak.steps}: {exc}"
    finally:
        if endpoint is not None:
            endpoint.stop()
    summary = {
        "backend": args.backend,
        "seed": args.seed,
        "iterations": soak.steps,
        "minutes": round((time.monotonic() - started) / 60, 1),
        "killed": dict(soak.killed),
        "ran_to_the_end_kill_point_not_reached": dict(soak.not_hit),
        "distinct_kill_points_hit": len(soak.points),
        "kill_points_hit": dict(sorted(soak.points.items())),
        "live_snapshots_at_end": len(soak.manifests),
        "snapshot_restores_verified": soak.restores_verified,
        "failure": failure,
    }
    print(json.dumps(summary, indent=1))
    if failure is None:
        shutil.rmtree(work, ignore_errors=True)
        return 0
    print(f"work directory kept: {work}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
