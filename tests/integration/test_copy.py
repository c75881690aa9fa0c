"""`copy` between local repositories: choosing snapshots, resuming after a SIGKILL,
keeping blob IDs between repositories that share their chunker, and refusing bad input
with the documented exit codes."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from cli_harness import PASSWORD, Cli, CliResult, MakeTree, restored_path
from copy_harness import SOURCE_PASSWORD, Source, make_source, picture

from bbackup.crypto.keys import MasterKey
from bbackup.errors import ExitCode
from bbackup.repository import RepositoryConfig, init_repository, open_repository
from bbackup.storage import open_storage

KILL_RUNNER = Path(__file__).resolve().parent.parent / "kill_runner.py"


@pytest.fixture
def source(
    tmp_path: Path, cli: Cli, make_tree: MakeTree, monkeypatch: pytest.MonkeyPatch
) -> Source:
    return make_source(tmp_path, cli, make_tree, monkeypatch)


def copied_originals(cli: Cli, repo: Path) -> list[str]:
    listing = cli("snapshots", "-r", repo, "--json").snapshot_list()
    return [s["original"] for s in listing]


def ok(result: CliResult) -> CliResult:
    assert result.exit_code == 0, result
    return result


def check_both(cli: Cli, source: Source, target: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`check --read-data` accepts the target and the source."""
    ok(cli("check", "-r", target, "--read-data"))
    with monkeypatch.context() as env:
        env.setenv("BBACKUP_PASSWORD", SOURCE_PASSWORD)
        ok(cli("check", "-r", source.repo, "--read-data"))


def test_copy_only_the_chosen_snapshots_then_the_rest(
    tmp_path: Path, cli: Cli, source: Source, repo: Path
) -> None:
    first, second = source.snapshot_ids

    chosen = ok(cli("copy", "-r", repo, *source.from_args(), first[:8], "--json"))
    assert [c["source"] for c in chosen.event("summary")["copied"]] == [first]
    assert copied_originals(cli, repo) == [first]

    by_tag = ok(cli("copy", "-r", repo, *source.from_args(), "--tag", "daily"))
    assert "nothing to copy: all 1 selected snapshots are in the target already" in by_tag.stdout

    rest = ok(cli("copy", "-r", repo, *source.from_args(), "--json"))
    summary = rest.event("summary")
    assert [c["source"] for c in summary["copied"]] == [second]
    assert [s["source"] for s in summary["skipped"]] == [first]
    assert copied_originals(cli, repo) == [first, second]
    # The second starts from the first's copy: only the file new in it is read again.
    assert summary["bytes_read"] < 3 * 1024 * 1024


@pytest.mark.parametrize(
    "kill_point",
    [
        "put:data/:1:after",  # a pack of the first snapshot stored, nothing indexed
        "put:snapshots/:1:after",  # the first snapshot committed, the second not begun
    ],
)
def test_killed_copy_resumes_to_a_complete_copy_both_repositories_check(
    tmp_path: Path,
    cli: Cli,
    source: Source,
    monkeypatch: pytest.MonkeyPatch,
    kill_point: str,
) -> None:
    target = tmp_path / "target"
    ok(cli("init", "-r", target, "--pack-size", "4"))
    trace = tmp_path / "trace"
    runner = [sys.executable, KILL_RUNNER, "--kill", kill_point, "--trace", trace, "--"]
    killed = subprocess.run(
        [*runner, "copy", "-r", target, *source.from_args()],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert killed.returncode == -9, killed.stderr
    assert trace.read_text().splitlines()[-1] == f"KILLED {kill_point}"

    resumed = ok(cli("copy", "-r", target, *source.from_args(), "--json"))

    summary = resumed.event("summary")
    if kill_point.startswith("put:data/"):
        assert summary["packs_adopted"] >= 1
        assert [c["source"] for c in summary["copied"]] == source.snapshot_ids
    else:
        assert [s["source"] for s in summary["skipped"]] == source.snapshot_ids[:1]
        assert [c["source"] for c in summary["copied"]] == source.snapshot_ids[1:]
    assert copied_originals(cli, target) == source.snapshot_ids
    check_both(cli, source, target, monkeypatch)
    restore = tmp_path / "restore"
    ok(cli("restore", "latest", "-r", target, "--target", restore))
    assert picture(restored_path(restore, source.src)) == picture(source.src)


def test_copy_between_repositories_sharing_their_chunker_keeps_blob_ids(
    tmp_path: Path, cli: Cli, source: Source, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared, fresh = tmp_path / "shared", tmp_path / "fresh"
    made = ok(cli("init", "-r", shared, "--copy-chunker-params", *source.from_args()))
    assert "created bbackup repository" in made.stdout
    ok(cli("init", "-r", fresh))
    # Each target already holds a backup of the same files, as a second machine's would.
    for target in (shared, fresh):
        ok(cli("backup", "-r", target, source.src))

    reused = ok(cli("copy", "-r", shared, *source.from_args(), "--json")).event("summary")
    rechunked = ok(cli("copy", "-r", fresh, *source.from_args(), "--json")).event("summary")

    assert reused["mode"] == "reuse" and rechunked["mode"] == "rechunk"
    # Same IDs: the target's blobs are recognised without reading the source's data.
    assert reused["bytes_read"] < 64 * 1024
    assert rechunked["bytes_read"] > 5 * 1024 * 1024
    assert reused["bytes_added"] < 64 * 1024 and rechunked["bytes_added"] < 64 * 1024
    # ... and the copies' trees are the source's very trees.
    with monkeypatch.context() as env:
        env.setenv("BBACKUP_PASSWORD", SOURCE_PASSWORD)
        source_listing = cli("snapshots", "-r", source.repo, "--json").snapshot_list()
    copy_listing = cli("snapshots", "-r", shared, "--json").snapshot_list()
    source_trees = [s["tree"] for s in source_listing]
    assert [s["tree"] for s in copy_listing if s["original"]] == source_trees
    check_both(cli, source, shared, monkeypatch)
    restore = tmp_path / "restore"
    ok(cli("restore", "latest", "-r", shared, "--target", restore, "--tag", "weekly"))
    assert picture(restored_path(restore, source.src)) == picture(source.src)


def test_copy_between_repositories_sharing_only_the_chunker_seed_hashes_chunks_again(
    tmp_path: Path, cli: Cli, source: Source, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "target"

    async def init_with_the_source_chunker() -> None:
        source_stack, target_stack = open_storage(str(source.repo)), open_storage(str(target))
        try:
            opened = await open_repository(source_stack, SOURCE_PASSWORD, load_index=False)
            master = replace(MasterKey.generate(), chunker_seed=opened.master.chunker_seed)
            config = RepositoryConfig(chunker=opened.config.chunker)
            await init_repository(target_stack, PASSWORD, config, master=master)
        finally:
            await source_stack.storage.aclose()
            await target_stack.storage.aclose()

    asyncio.run(init_with_the_source_chunker())

    summary = ok(cli("copy", "-r", target, *source.from_args(), "--json")).event("summary")

    assert summary["mode"] == "rehash"
    check_both(cli, source, target, monkeypatch)
    restore = tmp_path / "restore"
    ok(cli("restore", "latest", "-r", target, "--target", restore))
    assert picture(restored_path(restore, source.src)) == picture(source.src)
    again = ok(cli("backup", "-r", target, "--type", "full", "--json", source.src))
    assert again.event("summary")["bytes_added"] < 64 * 1024


def test_copy_refuses_bad_input_with_its_exit_code(
    tmp_path: Path, cli: Cli, source: Source, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    no_source = cli("copy", "-r", repo)
    assert no_source.exit_code == ExitCode.USAGE
    assert "no source repository given" in no_source.stderr

    wrong = tmp_path / "wrong-password"
    wrong.write_text("not it\n")
    bad = cli("copy", "-r", repo, "--from-repo", source.repo, "--from-password-file", wrong)
    assert bad.exit_code == ExitCode.WRONG_PASSWORD, bad

    missing = cli("copy", "-r", repo, *source.from_args(), "feedface")
    assert missing.exit_code != 0 and "no snapshot matches 'feedface'" in missing.stderr

    no_password = cli("copy", "-r", repo, "--from-repo", source.repo)
    assert no_password.exit_code == ExitCode.NO_PASSWORD
    assert "BBACKUP_FROM_PASSWORD" in no_password.stderr

    monkeypatch.setenv("BBACKUP_FROM_PASSWORD", PASSWORD)
    itself = cli("copy", "-r", repo, "--from-repo", repo)
    assert itself.exit_code == ExitCode.USAGE
    assert "the same repository" in itself.stderr
    assert copied_originals(cli, repo) == []


def test_a_source_snapshot_with_missing_data_is_not_copied_and_the_others_are(
    tmp_path: Path, cli: Cli, source: Source, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The newest data pack holds only more.bin, which only the second snapshot has.
    packs = sorted((source.repo / "data").rglob("*"), key=lambda p: p.stat().st_mtime_ns)
    newest = [p for p in packs if p.is_file()][-1]
    newest.unlink()

    result = cli("copy", "-r", repo, *source.from_args())

    assert result.exit_code == ExitCode.INTEGRITY, result
    first, second = source.snapshot_ids
    assert f"copied snapshot {first[:8]}" in result.stdout
    assert f"snapshot {second[:8]} not copied: data/" in result.stderr
    assert f"{newest.name}: pack is missing" in result.stderr
    assert copied_originals(cli, repo) == [first]
    ok(cli("check", "-r", repo, "--read-data"))
