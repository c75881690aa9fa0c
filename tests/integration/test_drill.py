"""`bbackup drill`: a sample of a snapshot restores and verifies on a good repository; a
damaged pack fails the drill with exit 13 naming the files it costs; successive drills
prove different packs until all are proven; `--compare-source` reports a live file whose
content changed behind unchanged metadata and leaves changed files alone; the scratch
directory never outlives the drill; and `bbackup run` drills when due, with `status`
showing the last good drill and how much of the repository is proven."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cli_harness import Cli, MakeTree
from restore_layout import flip_byte, read_layout

from bbackup.errors import ExitCode

KiB = 1024


@pytest.fixture
def backed_up(tmp_path: Path, cli: Cli, make_tree: MakeTree) -> tuple[Path, Path]:
    """(repository with 4 MiB packs, source): 56 one-blob files over about six packs."""
    repo = tmp_path / "repo"
    assert cli("init", "-r", repo, "--pack-size", "4").exit_code == 0
    spec: dict[str, object] = {f"f{i:02}.bin": os.urandom(400 * KiB + i) for i in range(56)}
    spec["sub"] = {"notes.txt": "notes\n"}
    src = make_tree(tmp_path / "src", spec)  # type: ignore[arg-type]
    assert cli("backup", "-r", repo, src).exit_code == 0
    return repo, src


def scratch_left(home: Path) -> list[Path]:
    return list((home / ".cache" / "bbackup").glob("drill-*"))


def test_drill_passes_on_a_good_repository_and_leaves_no_scratch(
    cli: Cli, backed_up: tuple[Path, Path], isolated_env: Path
) -> None:
    repo, _ = backed_up
    result = cli("drill", "-r", repo, "--files", "5", "--json")
    assert result.exit_code == 0, result
    summary = result.event("summary")
    assert summary["ok"] and summary["failures"] == []
    assert summary["verified_files"] == 5 and summary["verified_bytes"] == summary["bytes"] > 0
    assert summary["record"].startswith("drills/") and (repo / summary["record"]).is_file()
    assert summary["coverage"]["packs_proven"] == summary["packs_proven"] >= 1
    assert scratch_left(isolated_env) == []
    human = cli("drill", "-r", repo)
    assert human.exit_code == 0, human
    assert "restore drill passed:" in human.stdout and "proven restorable:" in human.stdout


def test_drill_fails_naming_every_file_of_a_damaged_pack(
    cli: Cli, backed_up: tuple[Path, Path], isolated_env: Path
) -> None:
    repo, _ = backed_up
    layout = read_layout(repo)
    damaged = next(iter(layout.files.values()))[0]
    flip_byte(repo / damaged.pack_path, damaged.entry.offset + damaged.entry.length // 2)
    lost = sorted(
        p for p, blobs in layout.files.items() if damaged.blob_id in {b.blob_id for b in blobs}
    )

    result = cli("drill", "-r", repo, "--sample", "100%", "--json")
    assert result.exit_code == ExitCode.INTEGRITY, result
    summary = result.event("summary")
    assert not summary["ok"]
    assert sorted(f["path"] for f in summary["failures"]) == lost
    assert damaged.pack_path in summary["failures"][0]["problem"]
    assert summary["verified_files"] == len(layout.files) - len(lost)
    assert scratch_left(isolated_env) == []

    human = cli("drill", "-r", repo, "--sample", "100%")
    assert human.exit_code == ExitCode.INTEGRITY
    assert all(f"failed: {path}: lost 1 blob(s)" in human.stderr for path in lost)
    assert "restore drill failed: 1 file(s) failed:" in human.stdout


def test_successive_drills_prove_different_packs_until_all_are_proven(
    cli: Cli, backed_up: tuple[Path, Path]
) -> None:
    repo, _ = backed_up
    proven: list[int] = []
    total = 0
    for _ in range(3):
        result = cli("drill", "-r", repo, "--sample", "20%", "--json")
        assert result.exit_code == 0, result
        coverage = result.event("summary")["coverage"]
        proven.append(coverage["packs_proven"])
        total = coverage["packs_total"]
    assert total >= 5
    per_drill = proven[0]
    assert per_drill < total
    # Each drill takes packs no drill proved before: coverage grows by a drill's worth.
    assert proven == [min(total, k * per_drill) for k in (1, 2, 3)]


def test_compare_source_reports_changed_content_behind_unchanged_metadata(
    cli: Cli, backed_up: tuple[Path, Path]
) -> None:
    repo, src = backed_up
    rotted, edited = src / "f03.bin", src / "f04.bin"
    st = rotted.stat()
    data = bytearray(rotted.read_bytes())
    data[1000] ^= 0xFF
    rotted.write_bytes(bytes(data))
    os.utime(rotted, ns=(st.st_atime_ns, st.st_mtime_ns))  # bit rot: metadata unchanged
    edited.write_bytes(os.urandom(edited.stat().st_size))
    os.utime(edited, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # a real edit

    result = cli("drill", "-r", repo, "--sample", "100%", "--compare-source", "--json")
    assert result.exit_code == ExitCode.INTEGRITY, result
    summary = result.event("summary")
    assert [(f["path"], f["kind"]) for f in summary["failures"]] == [(str(rotted), "source")]
    assert summary["source_skipped"] == 1  # the edited file
    assert summary["source_compared"] == summary["files"] - 1
    assert summary["verified_files"] == summary["files"]  # the repository itself is fine


def test_run_drills_when_due_and_status_shows_the_proof(
    cli: Cli, backed_up: tuple[Path, Path], tmp_path: Path
) -> None:
    repo, src = backed_up
    config = tmp_path / "config.toml"
    metrics = tmp_path / "bbackup.prom"
    config.write_text(
        f'metrics_file = "{metrics}"\n\n[repositories.local]\nurl = "{repo}"\n\n'
        '[jobs.docs]\nrepository = "local"\n'
        f'sources = ["{src}"]\ndrill = {{ schedule = "weekly", sample = "50%", '
        "compare_source = true }\n"
    )
    run = cli("run", "docs", "--config", config, "--json")
    assert run.exit_code == 0, run
    drill = run.event("summary")["drill"]
    assert drill["ok"] and drill["record"].startswith("drills/")
    assert drill["source_compared"] == drill["files"] >= 1
    status = cli("status", "--config", config, "--json").event("status")
    (row,) = status["jobs"]
    assert row["last_drill_ok"] is not None
    coverage = row["drill_coverage"]
    assert coverage["packs_proven"] == drill["coverage"]["packs_proven"] >= 1
    assert 0.4 <= coverage["fraction"] <= 1.0
    assert f'bbackup_drill_proven_ratio{{job="docs"}} {coverage["fraction"]:.4f}' in (
        metrics.read_text()
    )
    human = cli("status", "--config", config)
    assert "LAST GOOD DRILL" in human.stdout
    assert f"({coverage['packs_proven']}/{coverage['packs_total']} packs)" in human.stdout
    # Not due again this week: the second run does not drill.
    again = cli("run", "docs", "--config", config, "--json")
    assert again.event("summary")["drill"] is None


def test_a_scheduled_drill_reads_the_store_not_the_local_cache(
    cli: Cli, tmp_path: Path, make_tree: MakeTree, isolated_env: Path
) -> None:
    """`run`'s drill opens the repository without the cache, as `bbackup drill` does: the
    store lost its trees, the run's cache still holds them, the drill must fail."""
    repo = tmp_path / "repo"
    assert cli("init", "-r", repo).exit_code == 0
    src = make_tree(tmp_path / "src", {"file.bin": os.urandom(64 * KiB)})
    config = tmp_path / "config.toml"
    config.write_text(
        f'[repositories.local]\nurl = "{repo}"\n\n[jobs.docs]\nrepository = "local"\n'
        f'sources = ["{src}"]\ndrill = {{ schedule = "daily", sample = "100%" }}\n'
    )
    first = cli("run", "docs", "--config", config, "--json")
    assert first.exit_code == 0 and first.event("summary")["drill"]["ok"], first
    assert cli("ls", "-r", repo, "latest").exit_code == 0  # the cache holds every tree
    for tree_pack in (repo / "tree").rglob("*"):
        if tree_pack.is_file():
            tree_pack.write_bytes(tree_pack.read_bytes()[:20])
    # As if a day had passed: the job's state forgets the drill, so the next run drills.
    (isolated_env / ".local" / "state" / "bbackup" / "jobs" / "docs.json").unlink()

    # The next run: its backup finds the trees in the cache, its drill does not.
    second = cli("run", "docs", "--config", config, "--json")

    assert second.exit_code == ExitCode.INTEGRITY, second
    assert not second.event("summary")["drill"]["ok"]
