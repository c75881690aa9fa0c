"""SIGKILL at many points of backup, prune, forget and restore, on local disk and on S3:
afterwards `check` (and `check --read-data`) passes, every snapshot that existed before
restores byte for byte, and a re-run of the killed command succeeds.

The kill comes from tests/kill_runner.py, which runs the real CLI and kills it at the N-th
storage operation of a kind; the stale lock a killed process leaves needs no `unlock`: a
lock of a dead process on this host is stale at once (repository/lock.py). Single-point
kills of backup and prune with deeper assertions live in test_interrupted.py and
prune/test_prune_killed.py; one backup beside prunes, and a backup inside a prune, in
prune/test_prune_beside_backup_s3.py and prune/test_prune_races.py; several hosts backing
up at once beside a prune loop is the last test here.
(`copy` does not exist yet, so it has no kill points.)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cli_harness import CHEAPEST_KDF, PASSWORD, Cli, CliResult, restored_path
from typer.testing import CliRunner

from bbackup.cli.app import app
from s3_server import S3Bucket

KILL_RUNNER = Path(__file__).resolve().parent.parent / "kill_runner.py"
MiB = 1024 * 1024
#: Random, so no two chunks deduplicate: three 2 MiB files make two 4 MiB packs.
FILE = 2 * MiB


@dataclass(frozen=True)
class BaseRepository:
    """A local repository with three snapshots of one source, built once per module."""

    repo: Path
    src: Path
    #: Snapshot ID → the files it holds (path relative to src → bytes), oldest first.
    snapshots: dict[str, dict[str, bytes]]


def read_files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def write_files(root: Path, files: dict[str, bytes]) -> Path:
    """Make `root` hold exactly `files`."""
    shutil.rmtree(root, ignore_errors=True)
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> BaseRepository:
    """Three snapshots: the first two share a file, the third only edits small files."""
    root = tmp_path_factory.mktemp("kill-base")
    repo, src = root / "repo", root / "src"
    runner = CliRunner()
    env = {"BBACKUP_PASSWORD": PASSWORD, "XDG_CACHE_HOME": str(root / "cache")}

    def run(*args: str | Path) -> str:
        result = runner.invoke(app, [os.fspath(a) for a in args], env=env, catch_exceptions=False)
        assert result.exit_code == 0, result.stdout + result.stderr
        return result.stdout

    run("init", "-r", repo, "--pack-size", "4", *CHEAPEST_KDF)
    shared, two = os.urandom(FILE), os.urandom(FILE)
    states = [
        {"one.bin": os.urandom(FILE), "shared.bin": shared, "notes/a.txt": b"first\n"},
        {"shared.bin": shared, "two.bin": two, "notes/a.txt": b"second\n"},
        {"shared.bin": shared, "two.bin": two, "notes/a.txt": b"third\n", "notes/b": b"b\n"},
    ]
    snapshots: dict[str, dict[str, bytes]] = {}
    for day, files in enumerate(states, start=1):
        write_files(src, files)
        out = run("backup", "-r", repo, "--json", "--time", f"2026-03-0{day}T00:00:00+00:00", src)
        snapshots[CliResult(0, out, "").event("summary")["snapshot_id"]] = files
    return BaseRepository(repo, src, snapshots)


def last(base: BaseRepository) -> str:
    """The newest snapshot of the base repository."""
    return list(base.snapshots)[-1]


@dataclass
class Scene:
    """One test's copy of the base repository, on local disk or in an S3 bucket."""

    url: str
    base: BaseRepository
    tmp: Path
    cli: Cli
    bucket: S3Bucket | None

    def kill(self, point: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
        """Run bbackup `args` under kill_runner, dying at `point`; it must die."""
        trace = self.tmp / "trace"
        killed = subprocess.run(
            [sys.executable, KILL_RUNNER, "--kill", point, "--trace", trace, "--", *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert killed.returncode == -9, f"not killed at {point}:\n{killed.stdout}{killed.stderr}"
        assert trace.read_text().splitlines()[-1] == f"KILLED {point}"
        return killed

    def ok(self, *args: str | Path) -> CliResult:
        result = self.cli(*args)
        assert result.exit_code == 0, result
        return result

    def snapshot_ids(self) -> set[str]:
        listing = self.ok("snapshots", "-r", self.url, "--json").snapshot_list()
        return {s["id"] for s in listing}

    def restore(self, snapshot_id: str, target: Path, src: Path | None = None) -> dict[str, bytes]:
        """Restore into a fresh `target`; the files of `src` (default: the base's source)."""
        self.ok("restore", snapshot_id, "-r", self.url, "--target", target)
        return read_files(restored_path(target, src or self.base.src))

    def assert_sound(
        self, snapshots: dict[str, dict[str, bytes]], label: str, *, read_data: bool = True
    ) -> None:
        """check (--read-data: every pack read and verified too) passes; each of
        `snapshots` restores exactly."""
        self.ok("check", "-r", self.url, *(["--read-data"] if read_data else []))
        assert set(snapshots) <= self.snapshot_ids()
        for snapshot_id, files in snapshots.items():
            assert self.restore(snapshot_id, self.tmp / label / snapshot_id) == files, snapshot_id


def matrix(points: dict[str, str], on_s3: tuple[str, ...]) -> list[object]:
    """Every point on local disk; on S3 (slower) the points named in `on_s3`."""
    local = [pytest.param("local", point, id=f"local-{name}") for name, point in points.items()]
    s3 = [pytest.param("s3", points[name], id=f"s3-{name}", marks=pytest.mark.s3) for name in on_s3]
    return [*local, *s3]


@pytest.fixture
def scene(
    request: pytest.FixtureRequest, tmp_path: Path, base: BaseRepository, cli: Cli
) -> Iterator[Scene]:
    """A fresh copy of the base repository (same objects, same names) for one test."""
    if request.param == "local":
        repo = tmp_path / "repo"
        shutil.copytree(base.repo, repo)
        yield Scene(str(repo), base, tmp_path, cli, None)
        return
    bucket: S3Bucket = request.getfixturevalue("s3_bucket")
    for path in base.repo.rglob("*"):
        if path.is_file():
            key = f"repo/{path.relative_to(base.repo).as_posix()}"
            bucket.client.put_object(Bucket=bucket.bucket, Key=key, Body=path.read_bytes())
    yield Scene(bucket.url, base, tmp_path, cli, bucket)


# Where a backup of three new 2 MiB files dies (data/ packs are 4 MiB: two of them).
BACKUP_POINTS = {
    "before-first-pack": "put:data/:1:before",
    "mid-packs": "put:data/:1:after",
    "after-packs-before-index": "put:index/:1:before",
    "after-index-before-snapshot": "put:snapshots/:1:before",
    "after-snapshot-before-unlock": "delete:locks/:1:before",
}


@pytest.mark.parametrize(
    ("scene", "point"),
    matrix(BACKUP_POINTS, ("after-index-before-snapshot",)),
    indirect=["scene"],
)
def test_killed_backup_loses_nothing_and_reruns(scene: Scene, point: str) -> None:
    before = scene.snapshot_ids()
    new = {
        **scene.base.snapshots[last(scene.base)],
        "three.bin": os.urandom(FILE),
        "four.bin": os.urandom(FILE),
        "five.bin": os.urandom(FILE),
    }
    src = write_files(scene.tmp / "src", new)
    # Two connections, not one: see test_backup_with_one_connection_does_not_hang.
    backup = ("backup", "-r", scene.url, "--connections", "2", src)

    scene.kill(point, *backup)

    committed = scene.snapshot_ids() - before
    assert len(committed) == (point == BACKUP_POINTS["after-snapshot-before-unlock"])
    scene.assert_sound(scene.base.snapshots, "after-kill")
    rerun = scene.ok(*backup, "--json").event("summary")["snapshot_id"]
    scene.assert_sound(scene.base.snapshots, "after-rerun", read_data=False)
    assert scene.restore(rerun, scene.tmp / "rerun", src) == new


# Prune (grace 0: mark, then delete in a second pass) after forgetting the oldest snapshot:
# one.bin's pack is half used (repacked), the first snapshot's tree pack wholly unused.
PRUNE_POINTS = {
    "mid-repack-upload": "put:data/:1:after",
    "after-repack-before-index-rewrite": "put:index/:2:before",
    "after-index-rewrite-before-old-deletion": "put:index/:2:after",
    "after-mark-pass": "put:index/:3:before",
    "mid-pack-deletion": "delete:data/:1:after",
    "after-deletion-before-unlock": "delete:locks/:1:before",
}


@pytest.mark.parametrize(
    ("scene", "point"),
    matrix(PRUNE_POINTS, ("mid-pack-deletion",)),
    indirect=["scene"],
)
def test_killed_prune_loses_nothing_and_reruns(scene: Scene, point: str) -> None:
    oldest = next(iter(scene.base.snapshots))
    kept = {k: v for k, v in scene.base.snapshots.items() if k != oldest}
    scene.ok("forget", "-r", scene.url, "--keep-last", "2")
    prune = ("prune", "-r", scene.url, "--grace", "0s", "--max-unused", "0%")

    scene.kill(point, *prune, "--connections", "1")

    scene.assert_sound(kept, "after-kill")
    scene.ok(*prune)
    scene.assert_sound(kept, "after-rerun", read_data=False)
    left = scene.ok(*prune, "--dry-run", "--json").event("prune")
    assert [d for d in left["decisions"] if d["action"] != "keep"] == [], left


FORGET_POINTS = {
    "mid-snapshot-deletion": "delete:snapshots/:1:after",
    "after-deletion-before-unlock": "delete:locks/:1:before",
}


@pytest.mark.parametrize(
    ("scene", "point"), matrix(FORGET_POINTS, ("mid-snapshot-deletion",)), indirect=["scene"]
)
def test_killed_forget_loses_nothing_and_reruns(scene: Scene, point: str) -> None:
    newest = last(scene.base)
    forget = ("forget", "-r", scene.url, "--keep-last", "1")

    scene.kill(point, *forget)

    assert newest in scene.snapshot_ids()
    scene.assert_sound({newest: scene.base.snapshots[newest]}, "after-kill")
    scene.ok(*forget)
    assert scene.snapshot_ids() == {newest}
    scene.assert_sound({newest: scene.base.snapshots[newest]}, "after-rerun", read_data=False)


@pytest.mark.parametrize(
    "scene", ["local", pytest.param("s3", marks=pytest.mark.s3)], indirect=True
)
def test_killed_restore_touches_nothing_outside_the_target_and_reruns(scene: Scene) -> None:
    snapshot_id = next(iter(scene.base.snapshots))  # one.bin and shared.bin: 4 MiB
    area = scene.tmp / "area"
    neighbour = area / "neighbour.txt"
    area.mkdir()
    neighbour.write_bytes(b"not restored\n")
    target = area / "target"
    restore = ("restore", snapshot_id, "-r", scene.url, "--target", target)

    scene.kill("get:data/:1:after", *restore, "--connections", "1")

    assert sorted(p.name for p in area.iterdir()) == ["neighbour.txt", "target"]
    assert neighbour.read_bytes() == b"not restored\n"
    scene.ok(*restore)
    assert read_files(restored_path(target, scene.base.src)) == scene.base.snapshots[snapshot_id]
    assert sorted(p.name for p in area.iterdir()) == ["neighbour.txt", "target"]
    scene.assert_sound(scene.base.snapshots, "after-rerun")


def test_backup_with_one_connection_does_not_hang(tmp_path: Path, base: BaseRepository) -> None:
    """Found by the kill matrix: with two pack slots, `put`s waiting for a slot filled the
    event loop's default executor, where the slot is given back, and the backup never
    finished (on about one run in three). Fixed by `BlobWriter`'s own executor for them."""
    env = {**os.environ, "BBACKUP_PASSWORD": PASSWORD, "XDG_CACHE_HOME": str(tmp_path / "c")}
    for attempt in range(5):
        repo = shutil.copytree(base.repo, tmp_path / f"repo-{attempt}")
        src = write_files(
            tmp_path / f"src-{attempt}",
            {**base.snapshots[last(base)], **{f"{n}.bin": os.urandom(3 * MiB) for n in range(3)}},
        )
        try:
            done = subprocess.run(
                [sys.executable, "-m", "bbackup", "backup", "-r", repo, "--connections", "1", src],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                env=env,
                timeout=60,
            )
        except subprocess.TimeoutExpired:
            pytest.fail(f"backup --connections 1 hung (attempt {attempt + 1})")
        assert done.returncode == 0, done.stderr


def test_three_hosts_back_up_at_once_beside_a_prune_loop(
    tmp_path: Path, base: BaseRepository, cli: Cli
) -> None:
    """Three hosts back up (over a slow uplink) while forget and prune --grace 0s loop;
    each host re-adds a file whose only snapshot the loop forgets, so prune sees its pack
    unused while a backup deduplicates against it."""
    repo = shutil.copytree(base.repo, tmp_path / "repo")
    first = next(iter(base.snapshots))
    sources = {
        f"host-{n}": write_files(
            tmp_path / f"src-{n}",
            {"one.bin": base.snapshots[first]["one.bin"], f"own-{n}.bin": os.urandom(FILE)},
        )
        for n in range(3)
    }
    logs = []
    backups = []
    for host, src in sources.items():
        backup_args = ["backup", "-r", str(repo), "--host", host, "--json"]
        out = (tmp_path / f"{host}.out").open("w")  # a file: a full pipe would stall it
        logs.append(out)
        backups.append(
            subprocess.Popen(
                [sys.executable, KILL_RUNNER, "--put-delay", "0.3", "--", *backup_args, src],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        )
    prunes_beside_backups = 0
    try:
        while any(b.poll() is None for b in backups):
            assert cli("forget", "-r", repo, "--keep-last", "1").exit_code == 0
            assert cli("prune", "-r", repo, "--grace", "0s").exit_code == 0
            prunes_beside_backups += any(b.poll() is None for b in backups)
    finally:
        for backup in backups:
            if backup.poll() is None:
                backup.kill()
            backup.wait()
        for out in logs:
            out.close()

    assert [b.returncode for b in backups] == [0, 0, 0], [
        (tmp_path / f"{host}.out").read_text() for host in sources
    ]
    assert prunes_beside_backups >= 1
    assert cli("prune", "-r", repo, "--grace", "0s").exit_code == 0
    assert cli("check", "-r", repo, "--read-data").exit_code == 0
    for host, src in sources.items():
        summary = CliResult(0, (tmp_path / f"{host}.out").read_text(), "").event("summary")
        target = tmp_path / f"restore-{host}"
        assert cli("restore", summary["snapshot_id"], "-r", repo, "--target", target).exit_code == 0
        assert read_files(restored_path(target, src)) == read_files(src), host
