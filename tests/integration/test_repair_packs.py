"""A bit flipped in a data pack is healed: `check --read-data` names the pack and the fix,
`repair packs` keeps the pack's intact blobs and drops the damaged one, the next full
backup uploads it again, and `repair snapshots` rewrites the older snapshots without the
files that lost data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cli_harness import Cli, MakeTree, restored_path
from damaged_repo import (
    DamagedRepo,
    data_packs,
    flip_bit,
    make_damaged_repo,
    ok,
    source_files,
)

MiB = 1024 * 1024


def restore(cli: Cli, t: DamagedRepo, snapshot: str, target: Path) -> dict[str, bytes]:
    """The files of `snapshot` as restored, by path relative to the source."""
    ok(cli("restore", "-r", t.repo, snapshot, "--target", target))
    return source_files(restored_path(target, t.src))


@pytest.fixture
def damaged_repo(tmp_path: Path, cli: Cli, make_tree: MakeTree) -> DamagedRepo:
    return make_damaged_repo(
        tmp_path,
        cli,
        make_tree,
        {
            "big.bin": os.urandom(6 * MiB),
            "other.bin": os.urandom(3 * MiB),
            "a.txt": "alpha\n",
            "d": {"x.txt": "x\n", "y.bin": os.urandom(700 * 1024)},
        },
    )


def test_repair_packs_heals_a_flipped_bit_and_the_next_full_backup_restores(
    tmp_path: Path, cli: Cli, damaged_repo: DamagedRepo
) -> None:
    t = damaged_repo
    ok(cli("check", "-r", t.repo))  # same size, same header: only reading the data tells

    checked = cli("check", "-r", t.repo, "--read-data")
    assert checked.exit_code == 13, checked
    assert t.damaged in checked.stderr
    assert "bbackup repair packs" in checked.stderr

    report = ok(cli("repair", "packs", "-r", t.repo, "--json")).event("repair_packs")
    assert list(report["damaged_packs"]) == [t.damaged]
    assert report["packs_deleted"] == [t.damaged]
    assert len(report["blobs_lost"]) == 1
    assert report["blobs_salvaged"] >= 1 and report["packs_written"] >= 1
    assert not (t.repo / t.damaged).exists()

    # Every pack now reads back intact; only the old snapshot misses the dropped blob.
    checked = cli("check", "-r", t.repo, "--read-data", "--json")
    assert checked.exit_code == 13, checked
    errors = checked.event("check")["errors"]
    assert errors and all("not in the index" in e and "repair snapshots" in e for e in errors)

    # The full backup of the intact source does not deduplicate against the lost blob...
    summary = ok(cli("backup", "-r", t.repo, "--type", "full", "--json", t.src)).event("summary")
    assert summary["bytes_added"] > 0  # the lost chunk (a file's last may be small), again
    assert restore(cli, t, summary["snapshot_id"], tmp_path / "new") == source_files(t.src)
    # ... and so the old snapshot, whose blob is back, restores whole again too.
    assert restore(cli, t, t.snapshot, tmp_path / "old") == source_files(t.src)
    ok(cli("check", "-r", t.repo, "--read-data"))
    none = ok(cli("repair", "snapshots", "-r", t.repo, "--json")).event("repair_snapshots")
    assert none["rewritten"] == [] and none["snapshots_checked"] == 2


def test_repair_snapshots_leaves_out_the_file_that_lost_data_and_keeps_the_rest(
    tmp_path: Path, cli: Cli, damaged_repo: DamagedRepo
) -> None:
    t = damaged_repo
    source = source_files(t.src)
    ok(cli("repair", "packs", "-r", t.repo))

    repaired = ok(cli("repair", "snapshots", "-r", t.repo, "--forget", "--json"))
    report = repaired.event("repair_snapshots")
    [rewritten] = report["rewritten"]
    assert rewritten["original"] == t.snapshot
    assert report["forgotten"] == [t.snapshot]
    [lost] = rewritten["lost"]
    lost_file = os.path.relpath(lost, t.src)  # lost paths are absolute source paths
    assert lost_file in source

    ok(cli("check", "-r", t.repo, "--read-data"))
    restored = restore(cli, t, rewritten["new"], tmp_path / "old")
    assert restored == {name: data for name, data in source.items() if name != lost_file}
    [listed] = ok(cli("snapshots", "-r", t.repo, "--json")).snapshot_list()
    assert listed["id"] == rewritten["new"]
    assert "repaired" in listed["tags"]


def test_repair_packs_dry_run_and_a_named_intact_pack_change_nothing(
    cli: Cli, damaged_repo: DamagedRepo
) -> None:
    t = damaged_repo
    before = data_packs(t.repo)
    intact = next(p for p in before if p.relative_to(t.repo).as_posix() != t.damaged)

    dry = ok(cli("repair", "packs", "-r", t.repo, "--dry-run"))
    assert t.damaged in dry.stderr and "nothing was changed" in dry.stdout
    named = ok(cli("repair", "packs", "-r", t.repo, "--pack", intact.name[:12], "--json"))
    assert named.event("repair_packs")["packs_read"] == 1
    assert named.event("repair_packs")["damaged_packs"] == {}
    assert data_packs(t.repo) == before

    unknown = cli("repair", "packs", "-r", t.repo, "--pack", "f" * 64)
    assert unknown.exit_code == 2, unknown
    assert "--pack" in unknown.stderr and "Traceback" not in unknown.output

    ok(cli("repair", "packs", "-r", t.repo, "--pack", t.damaged))
    assert not (t.repo / t.damaged).exists()


def test_repair_snapshots_dry_run_then_keeps_the_original_without_forget(
    tmp_path: Path, cli: Cli, damaged_repo: DamagedRepo
) -> None:
    t = damaged_repo
    ok(cli("repair", "packs", "-r", t.repo))

    dry = ok(cli("repair", "snapshots", "-r", t.repo, "--dry-run"))
    assert "would be rewritten" in dry.stdout and "nothing was changed" in dry.stdout
    assert len(list((t.repo / "snapshots").iterdir())) == 1

    result = ok(cli("repair", "snapshots", "-r", t.repo))
    assert "lost:" in result.stdout
    listed = ok(cli("snapshots", "-r", t.repo, "--json")).snapshot_list()
    assert {s["id"] for s in listed} >= {t.snapshot}
    assert len(listed) == 2
    again = ok(cli("repair", "snapshots", "-r", t.repo, "--json")).event("repair_snapshots")
    assert [r["original"] for r in again["rewritten"]] == [t.snapshot]  # the original only


def test_a_lost_tree_pack_costs_the_directories_it_held_and_forget_drops_what_is_gone(
    tmp_path: Path, cli: Cli, make_tree: MakeTree
) -> None:
    repo = tmp_path / "repo"
    ok(cli("init", "-r", repo))
    src = make_tree(
        tmp_path / "src", {"a.txt": "alpha\n", "d": {"x.txt": "x\n", "e": {"y.txt": "y\n"}}}
    )
    first = ok(cli("backup", "-r", repo, "--json", src / "d")).event("summary")["snapshot_id"]
    [tree_pack] = (p for p in (repo / "tree").rglob("*") if p.is_file())
    # The second backup reuses the trees of d and d/e from the first one's tree pack.
    second = ok(cli("backup", "-r", repo, "--json", src)).event("summary")["snapshot_id"]
    tree_pack.unlink()
    name = tree_pack.relative_to(repo).as_posix()

    checked = cli("check", "-r", repo)
    assert checked.exit_code == 13, checked
    assert f"{name}: pack is in the index but missing" in checked.stderr
    assert "bbackup repair packs" in checked.stderr
    report = ok(cli("repair", "packs", "-r", repo, "--json")).event("repair_packs")
    assert report["damaged_packs"] == {name: ["pack is missing"]}

    kept = cli("repair", "snapshots", "-r", repo)
    assert kept.exit_code == 13, kept  # the first snapshot's root is gone: said, not hidden
    assert f"snapshot {first[:8]}: its root tree is lost" in kept.stderr
    assert "--forget" in kept.stderr
    result = ok(cli("repair", "snapshots", "-r", repo, "--forget", "--json"))
    report = result.event("repair_snapshots")
    assert report["unrepairable"] == [first]
    assert sorted(report["forgotten"]) == sorted([first, second])
    [rewritten] = report["rewritten"]
    assert rewritten["original"] == second
    assert rewritten["lost"] == [f"{src}/d/"]

    ok(cli("check", "-r", repo, "--read-data"))
    out = tmp_path / "out"
    ok(cli("restore", "-r", repo, rewritten["new"], "--target", out))
    assert source_files(restored_path(out, src)) == {"a.txt": b"alpha\n"}


def test_after_repair_packs_an_incremental_backup_reads_the_file_that_lost_a_chunk(
    tmp_path: Path, cli: Cli, damaged_repo: DamagedRepo
) -> None:
    t = damaged_repo
    ok(cli("repair", "packs", "-r", t.repo))

    # Unchanged metadata does not let the parent's content list be reused: a blob is gone.
    summary = ok(cli("backup", "-r", t.repo, "--json", t.src)).event("summary")

    assert summary["parent"] == t.snapshot and summary["bytes_added"] > 0
    assert restore(cli, t, summary["snapshot_id"], tmp_path / "new") == source_files(t.src)
    ok(cli("check", "-r", t.repo, "--read-data"))


def test_repairs_that_rewrite_the_index_or_snapshots_refuse_while_a_segment_is_damaged(
    cli: Cli, damaged_repo: DamagedRepo
) -> None:
    t = damaged_repo
    [segment] = (t.repo / "index").iterdir()
    flip_bit(segment, segment.stat().st_size // 2)
    name = f"index/{segment.name}"

    for command in ("packs", "snapshots"):
        refused = cli("repair", command, "-r", t.repo)
        assert refused.exit_code == 13, refused
        assert name in refused.stderr and "repair index` first" in refused.stderr
    assert (t.repo / t.damaged).exists()
    assert len(list((t.repo / "snapshots").iterdir())) == 1
