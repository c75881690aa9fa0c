"""A damaged or misnamed index segment, snapshot document or tree pack costs only what
needs it: it is named, skipped, reported by `check`, blocks prune, and `repair index`
rebuilds the index from the packs."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from cli_harness import Cli, CliResult, MakeTree, restored_path
from damaged_repo import ok, source_files

import bbackup.ops.repair

MiB = 1024 * 1024


@dataclass(frozen=True)
class TwoSnapshots:
    """Two backups of disjoint sources, each with its own packs and index segment."""

    repo: Path
    src_a: Path
    src_b: Path
    snap_a: str
    snap_b: str
    segment_a: Path
    segment_b: Path
    trees_a: set[Path]
    data_a: set[Path]


def objects(repo: Path, prefix: str) -> set[Path]:
    return {p for p in (repo / prefix).rglob("*") if p.is_file() and not p.name.startswith(".")}


def snapshot_ids(cli: Cli, repo: Path) -> list[str]:
    listed = ok(cli("snapshots", "-r", repo, "--json")).snapshot_list()
    return [s["id"] for s in listed]


def restore(cli: Cli, repo: Path, snapshot: str, target: Path, *flags: str) -> CliResult:
    return cli("restore", "-r", repo, snapshot, "--target", target, *flags)


def flip_bit_in_middle(path: Path) -> None:
    with path.open("r+b") as f:
        f.seek(path.stat().st_size // 2)
        byte = f.read(1)[0]
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte ^ 0x10]))


def drop_local_cache() -> None:
    shutil.rmtree(Path(os.environ["XDG_CACHE_HOME"]) / "bbackup", ignore_errors=True)


@pytest.fixture
def two_snapshots(tmp_path: Path, cli: Cli, make_tree: MakeTree) -> TwoSnapshots:
    repo = tmp_path / "repo"
    ok(cli("init", "-r", repo, "--pack-size", "4"))
    src_a = make_tree(
        tmp_path / "a", {"big.bin": os.urandom(5 * MiB), "a.txt": "alpha\n", "d": {"x": "x\n"}}
    )
    src_b = make_tree(tmp_path / "b", {"photo.raw": os.urandom(2 * MiB), "b.txt": "beta\n"})
    ok(cli("backup", "-r", repo, src_a))
    [segment_a] = objects(repo, "index")
    [snap_a] = snapshot_ids(cli, repo)
    trees_a, data_a = objects(repo, "tree"), objects(repo, "data")
    ok(cli("backup", "-r", repo, src_b))
    [segment_b] = objects(repo, "index") - {segment_a}
    [snap_b] = [s for s in snapshot_ids(cli, repo) if s != snap_a]
    return TwoSnapshots(repo, src_a, src_b, snap_a, snap_b, segment_a, segment_b, trees_a, data_a)


def test_a_damaged_index_segment_is_named_and_skipped_until_repair_index_rebuilds_it(
    tmp_path: Path, cli: Cli, two_snapshots: TwoSnapshots
) -> None:
    t = two_snapshots
    flip_bit_in_middle(t.segment_a)
    drop_local_cache()
    packs_before = objects(t.repo, "data") | objects(t.repo, "tree")
    name = f"index/{t.segment_a.name}"

    assert set(snapshot_ids(cli, t.repo)) == {t.snap_a, t.snap_b}
    restored = ok(restore(cli, t.repo, t.snap_b, tmp_path / "out-b"))
    assert source_files(restored_path(tmp_path / "out-b", t.src_b)) == source_files(t.src_b)
    [warning] = [line for line in restored.stderr.splitlines() if name in line]
    assert "damaged" in warning and "repair index" in warning

    checked = cli("check", "-r", t.repo)
    assert checked.exit_code == 13, checked
    assert name in checked.stderr
    pruned = cli("prune", "-r", t.repo, "--grace", "0s")
    assert pruned.exit_code == 13, pruned
    assert name in pruned.stderr and "repair index" in pruned.stderr
    assert objects(t.repo, "data") | objects(t.repo, "tree") == packs_before

    # A backup runs; it uploads again what only the damaged segment indexed.
    ok(cli("backup", "-r", t.repo, t.src_a))

    repaired = ok(cli("repair", "index", "-r", t.repo))
    assert "1 damaged" in repaired.stdout
    assert not t.segment_a.exists()
    ok(cli("check", "-r", t.repo, "--read-data"))
    out_a = tmp_path / "out-a"
    restored = ok(restore(cli, t.repo, t.snap_a, out_a))
    assert source_files(restored_path(out_a, t.src_a)) == source_files(t.src_a)
    assert "warning" not in restored.stderr
    ok(cli("prune", "-r", t.repo, "--grace", "0s"))
    ok(cli("check", "-r", t.repo, "--read-data"))


def test_a_damaged_index_segment_in_the_store_with_a_warm_cache(
    tmp_path: Path, cli: Cli, two_snapshots: TwoSnapshots
) -> None:
    t = two_snapshots
    flip_bit_in_middle(t.segment_a)  # the backup left a good copy in the local cache

    out = tmp_path / "out"
    ok(restore(cli, t.repo, t.snap_a, out))
    assert source_files(restored_path(out, t.src_a)) == source_files(t.src_a)
    checked = cli("check", "-r", t.repo)  # check reads the store, not the cache
    assert checked.exit_code == 13, checked
    assert f"index/{t.segment_a.name}" in checked.stderr

    ok(cli("repair", "index", "-r", t.repo))
    ok(cli("check", "-r", t.repo, "--read-data"))


def test_a_damaged_cached_copy_is_dropped_and_fetched_again(
    tmp_path: Path, cli: Cli, two_snapshots: TwoSnapshots
) -> None:
    t = two_snapshots
    [cached] = (Path(os.environ["XDG_CACHE_HOME"]) / "bbackup").rglob(t.segment_a.name)
    flip_bit_in_middle(cached)

    out = tmp_path / "out"
    restored = ok(restore(cli, t.repo, t.snap_a, out))

    assert source_files(restored_path(out, t.src_a)) == source_files(t.src_a)
    assert "warning" not in restored.stderr
    assert cached.read_bytes() == t.segment_a.read_bytes()


def test_repair_index_dry_run_changes_nothing_and_says_what_it_would_do(
    cli: Cli, two_snapshots: TwoSnapshots
) -> None:
    t = two_snapshots
    flip_bit_in_middle(t.segment_a)
    drop_local_cache()
    before = objects(t.repo, "index")

    result = ok(cli("repair", "index", "-r", t.repo, "--dry-run", "--json"))

    report = result.event("repair_index")
    assert report["dry_run"] is True
    assert report["packs_read"] == len(objects(t.repo, "data") | objects(t.repo, "tree"))
    assert report["blobs_indexed"] > 0
    assert report["segments_written"] == []
    assert list(report["damaged_segments"]) == [f"index/{t.segment_a.name}"]
    assert objects(t.repo, "index") == before
    human = ok(cli("repair", "index", "-r", t.repo, "--dry-run"))
    assert "would" in human.stdout and "nothing was changed" in human.stdout


def test_repair_index_rebuilds_a_lost_index_and_names_a_pack_whose_header_is_damaged(
    tmp_path: Path, cli: Cli, two_snapshots: TwoSnapshots
) -> None:
    t = two_snapshots
    for segment in objects(t.repo, "index"):
        segment.unlink()
    drop_local_cache()
    damaged = sorted(t.data_a)[0]
    with damaged.open("r+b") as f:  # a bit in the header, just before its length
        f.seek(-8, os.SEEK_END)
        byte = f.read(1)[0]
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte ^ 0x01]))

    result = ok(cli("repair", "index", "-r", t.repo, "--json"))

    report = result.event("repair_index")
    assert list(report["damaged_packs"]) == [damaged.relative_to(t.repo).as_posix()]
    assert report["packs_read"] == len(objects(t.repo, "data") | objects(t.repo, "tree")) - 1
    [segment] = objects(t.repo, "index")
    assert segment.name in report["segments_written"][0]
    out = tmp_path / "out"
    ok(restore(cli, t.repo, t.snap_b, out))
    assert source_files(restored_path(out, t.src_b)) == source_files(t.src_b)


def test_a_damaged_snapshot_document_costs_only_that_snapshot(
    tmp_path: Path, cli: Cli, two_snapshots: TwoSnapshots
) -> None:
    t = two_snapshots
    document = t.repo / "snapshots" / t.snap_a
    flip_bit_in_middle(document)
    drop_local_cache()
    name = f"snapshots/{t.snap_a}"

    listed = cli("snapshots", "-r", t.repo)
    assert listed.exit_code == 0, listed
    assert t.snap_b[:8] in listed.stdout and t.snap_a[:8] not in listed.stdout
    assert name in listed.stderr and "damaged" in listed.stderr
    out = tmp_path / "out"
    ok(restore(cli, t.repo, t.snap_b[:8], out))
    assert source_files(restored_path(out, t.src_b)) == source_files(t.src_b)
    ok(cli("backup", "-r", t.repo, t.src_b))
    assert len(snapshot_ids(cli, t.repo)) == 2

    forgot = ok(cli("forget", "-r", t.repo, "--keep-last", "1"))
    assert name in forgot.stderr
    assert len(snapshot_ids(cli, t.repo)) == 1
    assert document.exists()  # not deleted behind the user's back

    checked = cli("check", "-r", t.repo)
    assert checked.exit_code == 13, checked
    assert name in checked.stderr
    pruned = cli("prune", "-r", t.repo)
    assert pruned.exit_code == 13, pruned
    assert name in pruned.stderr


def test_a_snapshot_document_copied_under_another_name_is_not_a_snapshot(
    cli: Cli, two_snapshots: TwoSnapshots
) -> None:
    t = two_snapshots
    replay = t.repo / "snapshots" / ("0" * 64)
    shutil.copyfile(t.repo / "snapshots" / t.snap_b, replay)

    listed = cli("snapshots", "-r", t.repo, "--json")
    assert listed.exit_code == 0, listed
    ids = [s["id"] for s in listed.snapshot_list()]
    assert sorted(ids) == sorted([t.snap_a, t.snap_b])
    [warning] = [json.loads(line) for line in listed.stderr.splitlines()]
    assert warning["event"] == "warning"
    assert warning["message"].startswith(f"snapshots/{replay.name}: misnamed")

    checked = cli("check", "-r", t.repo)
    assert checked.exit_code == 13, checked
    assert f"snapshots/{replay.name}: misnamed" in checked.stderr


def test_an_index_segment_under_a_wrong_name_is_rejected_and_named(
    tmp_path: Path, cli: Cli, two_snapshots: TwoSnapshots
) -> None:
    t = two_snapshots
    wrong = t.repo / "index" / ("f" * 64)
    shutil.copyfile(t.segment_b, wrong)
    name = f"index/{wrong.name}"

    restored = ok(restore(cli, t.repo, t.snap_b, tmp_path / "out"))
    assert name in restored.stderr and "misnamed" in restored.stderr
    checked = cli("check", "-r", t.repo)
    assert checked.exit_code == 13, checked
    assert f"{name}: misnamed" in checked.stderr

    ok(cli("repair", "index", "-r", t.repo))
    assert not wrong.exists()
    ok(cli("check", "-r", t.repo))


def test_a_damaged_tree_pack_does_not_stop_another_snapshot(
    tmp_path: Path, cli: Cli, two_snapshots: TwoSnapshots
) -> None:
    t = two_snapshots
    damaged = sorted(t.trees_a)[0]
    with damaged.open("r+b") as f:  # inside the first tree blob, past its nonce
        f.seek(20)
        byte = f.read(1)[0]
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte ^ 0x01]))
    drop_local_cache()

    out = tmp_path / "out-b"
    ok(restore(cli, t.repo, t.snap_b, out))
    assert source_files(restored_path(out, t.src_b)) == source_files(t.src_b)
    ok(cli("snapshots", "-r", t.repo))
    failed = restore(cli, t.repo, t.snap_a, tmp_path / "out-a")
    assert failed.exit_code == 13, failed
    assert damaged.name in failed.stderr


def test_repair_index_splits_a_large_index_and_a_second_repair_replaces_every_segment(
    tmp_path: Path, cli: Cli, two_snapshots: TwoSnapshots, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bbackup.ops.repair, "SEGMENT_MAX_BLOBS", 2)
    t = two_snapshots

    first = ok(cli("repair", "index", "-r", t.repo, "--json")).event("repair_index")
    assert len(first["segments_written"]) >= 3
    assert {f"index/{p.name}" for p in objects(t.repo, "index")} == set(first["segments_written"])
    second = ok(cli("repair", "index", "-r", t.repo, "--json")).event("repair_index")
    assert sorted(second["old_segments"]) == sorted(first["segments_written"])
    assert {f"index/{p.name}" for p in objects(t.repo, "index")} == set(second["segments_written"])
    assert second["blobs_indexed"] == first["blobs_indexed"]

    ok(cli("check", "-r", t.repo, "--read-data"))
    out = tmp_path / "out"
    ok(restore(cli, t.repo, t.snap_a, out, "--no-cache"))
    assert source_files(restored_path(out, t.src_a)) == source_files(t.src_a)
