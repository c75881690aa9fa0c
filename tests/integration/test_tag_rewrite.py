"""`tag` and `rewrite` on a repository with known history: new documents replace the old
ones, `check` still passes, and a secret removed by `rewrite --forget` and `prune` is gone
from the index and from every pack."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from cli_harness import Cli, MakeTree, restored_path
from history_harness import SECRET, History, make_history, ok, store_lock


@pytest.fixture
def history(tmp_path: Path, repo: Path, cli: Cli, make_tree: MakeTree) -> History:
    return make_history(tmp_path, repo, cli, make_tree)


def snapshots(cli: Cli, repo: Path) -> dict[str, dict[str, Any]]:
    listed = ok(cli("snapshots", "-r", repo, "--json")).snapshot_list()
    return {s["id"]: s for s in listed}


def cat(cli: Cli, repo: Path, *args: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(ok(cli("cat", "-r", repo, *args)).stdout)
    return document


def content_ids(cli: Cli, repo: Path, snapshot: str, path: str) -> list[str]:
    """The blob IDs of the file at absolute `path` in `snapshot`, read with `cat`."""
    tree = cat(cli, repo, "snapshot", snapshot)["tree"]
    *dirs, name = path.strip("/").split("/")
    for part in dirs:
        tree = next(n for n in cat(cli, repo, "tree", tree)["nodes"] if n["name"] == part)[
            "subtree"
        ]
    node = next(n for n in cat(cli, repo, "tree", tree)["nodes"] if n["name"] == name)
    ids: list[str] = node["content"]
    return ids


def test_tag_add_remove_set_rewrites_the_snapshot_document(history: History, cli: Cli) -> None:
    added = ok(cli("tag", "-r", history.repo, "--json", history.first[:8], "--add", "keep,audit"))
    [change] = added.event("tag")["changed"]
    assert change["old"] == history.first
    assert change["tags"] == ["audit", "keep"]

    listed = snapshots(cli, history.repo)
    assert history.first not in listed
    assert not (Path(history.repo) / "snapshots" / history.first).exists()
    assert listed[change["new"]]["tags"] == ["audit", "keep"]
    assert listed[change["new"]]["time"] == "2026-01-01T00:00:00+00:00"
    assert listed[change["new"]]["summary"]["original"] == history.first

    removed = ok(cli("tag", "-r", history.repo, "--json", change["new"], "--remove", "audit"))
    [again] = removed.event("tag")["changed"]
    assert again["tags"] == ["keep"]
    # `original` still names the snapshot as first written, as restic's does.
    assert snapshots(cli, history.repo)[again["new"]]["summary"]["original"] == history.first

    ok(cli("tag", "-r", history.repo, "--set", "a", "--set", "b"))  # no SNAPSHOT: every one
    assert [s["tags"] for s in snapshots(cli, history.repo).values()] == [["a", "b"], ["a", "b"]]
    ok(cli("tag", "-r", history.repo, "--tag", "a", "--set", ""))
    assert [s["tags"] for s in snapshots(cli, history.repo).values()] == [[], []]
    ok(cli("check", "-r", history.repo))


def test_tag_that_changes_nothing_keeps_the_snapshot(history: History, cli: Cli) -> None:
    result = ok(cli("tag", "-r", history.repo, "--json", "latest", "--remove", "absent"))

    assert result.event("tag") == {"event": "tag", "changed": [], "unchanged": [history.second]}
    assert history.second in snapshots(cli, history.repo)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "give --add, --remove or --set"),
        (("--set", "a", "--add", "b"), "--set cannot be combined"),
    ],
)
def test_tag_without_a_change_is_a_usage_error(
    history: History, cli: Cli, args: tuple[str, ...], message: str
) -> None:
    result = cli("tag", "-r", history.repo, "latest", *args)

    assert result.exit_code == 2
    assert message in result.stderr


def test_tag_and_rewrite_respect_an_exclusive_lock(history: History, cli: Cli) -> None:
    store_lock(history.repo, exclusive=True, at=time.time())
    tagged = cli("tag", "-r", history.repo, "latest", "--add", "x")
    rewritten = cli("rewrite", "-r", history.repo, "latest", "--exclude", ".env")

    assert (tagged.exit_code, rewritten.exit_code) == (11, 11)
    assert "repository is locked: exclusive lock by backup@nas" in tagged.stderr
    assert set(snapshots(cli, history.repo)) == {history.first, history.second}


def test_tag_an_unknown_snapshot_fails_and_changes_nothing(history: History, cli: Cli) -> None:
    result = cli("tag", "-r", history.repo, "0000abcd", "--add", "x")

    assert result.exit_code == 1
    assert "no snapshot matches '0000abcd'" in result.stderr
    assert set(snapshots(cli, history.repo)) == {history.first, history.second}


def test_rewrite_forget_and_prune_remove_the_secret_from_the_repository(
    tmp_path: Path, history: History, cli: Cli
) -> None:
    secret = history.path(".env")
    secret_blobs = set(content_ids(cli, history.repo, history.second, secret))
    assert secret_blobs and secret_blobs == set(
        content_ids(cli, history.repo, history.first, secret)
    )

    rewritten = ok(
        cli("rewrite", "-r", history.repo, "--json", "--exclude", ".env", "--forget")
    ).event("rewrite")
    assert [(r["original"], r["removed"]) for r in rewritten["rewritten"]] == [
        (history.first, [secret]),
        (history.second, [secret]),
    ]
    assert rewritten["forgotten"] == [history.first, history.second]
    listed = snapshots(cli, history.repo)
    assert set(listed) == {r["new"] for r in rewritten["rewritten"]}
    assert all(s["tags"] == ["rewrite"] for s in listed.values())
    assert all(cat(cli, history.repo, "snapshot", s)["excludes"] == [".env"] for s in listed)
    assert {s["summary"]["original"] for s in listed.values()} == {history.first, history.second}

    ok(cli("prune", "-r", history.repo, "--grace", "0s", "--max-unused", "0%"))

    blobs = ok(cli("list", "-r", history.repo, "blobs")).stdout.split()
    assert not secret_blobs & set(blobs)
    for pack in ok(cli("list", "-r", history.repo, "packs")).stdout.split():
        held = {b["id"] for b in cat(cli, history.repo, "pack", pack)["blobs"]}
        assert not secret_blobs & held, f"pack {pack} still holds the secret"
    ok(cli("check", "-r", history.repo, "--read-data"))
    target = tmp_path / "restored"
    ok(cli("restore", "-r", history.repo, "latest", "--target", target))
    restored = restored_path(target, history.src)
    assert not (restored / ".env").exists()
    assert (restored / "a.txt").read_text() == "alpha, changed\n"
    assert (restored / "keep" / "same.txt").read_text() == "unchanged\n"
    assert SECRET not in b"".join(p.read_bytes() for p in restored.rglob("*") if p.is_file())


def test_rewrite_dry_run_and_keeping_the_originals(history: History, cli: Cli) -> None:
    dry = ok(cli("rewrite", "-r", history.repo, "-n", "latest", "-e", history.path("extra")))
    assert f"snapshot {history.second[:8]} would be rewritten, removing:" in dry.stdout
    assert f"  {history.path('extra')}\n" in dry.stdout
    assert set(snapshots(cli, history.repo)) == {history.first, history.second}

    kept = ok(cli("rewrite", "-r", history.repo, "--json", "latest", "-e", "extra"))
    [r] = kept.event("rewrite")["rewritten"]
    assert set(snapshots(cli, history.repo)) == {history.first, history.second, r["new"]}
    diff = ok(cli("diff", "-r", history.repo, "--json", history.second, r["new"]))
    assert [(e["modifier"], e["path"]) for e in diff.events() if e["event"] == "change"] == [
        ("-", history.path("extra")),
        ("-", history.path("extra/x.bin")),
    ]
    ok(cli("check", "-r", history.repo))


def test_rewrite_with_a_pattern_matching_nothing_exits_21(history: History, cli: Cli) -> None:
    result = cli("rewrite", "-r", history.repo, "--exclude", "*.secret", "--forget")

    assert result.exit_code == 21
    assert "no pattern matched anything; nothing was rewritten" in result.stderr
    assert set(snapshots(cli, history.repo)) == {history.first, history.second}


def test_rewrite_reads_patterns_from_a_file_and_needs_one(
    tmp_path: Path, history: History, cli: Cli
) -> None:
    patterns = tmp_path / "excludes"
    patterns.write_text("# secrets\n\n.env\n")

    none = cli("rewrite", "-r", history.repo, "latest")
    result = ok(cli("rewrite", "-r", history.repo, "--json", "latest", "--exclude-file", patterns))

    assert none.exit_code == 2
    assert "give --exclude or --exclude-file" in none.stderr
    [r] = result.event("rewrite")["rewritten"]
    assert r["removed"] == [history.path(".env")]
    assert os.path.basename(r["removed"][0]) == ".env"


def test_rewrite_that_would_empty_a_snapshot_writes_none_and_forget_removes_it(
    history: History, cli: Cli
) -> None:
    kept = ok(cli("rewrite", "-r", history.repo, "--json", "latest", "-e", history.path("")))
    assert kept.event("rewrite")["emptied"] == [history.second]
    assert kept.event("rewrite")["rewritten"] == []
    assert set(snapshots(cli, history.repo)) == {history.first, history.second}

    gone = ok(cli("rewrite", "-r", history.repo, "latest", "-e", history.path(""), "--forget"))
    assert f"snapshot {history.second[:8]} would hold nothing: no new snapshot; removed" in (
        gone.stdout
    )
    assert set(snapshots(cli, history.repo)) == {history.first}
