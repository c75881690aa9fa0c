"""`cat`, `list` and `cache` on a repository with known history: IDs one per line as
the store holds them, objects decrypted as JSON, caches shown and cleaned up by age."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from cli_harness import Cli, MakeTree
from history_harness import History, make_history, ok, store_lock


@pytest.fixture
def history(tmp_path: Path, repo: Path, cli: Cli, make_tree: MakeTree) -> History:
    return make_history(tmp_path, repo, cli, make_tree)


def stored(repo: Path, directory: str) -> list[str]:
    """The IDs of the objects under `directory` on disk, sorted."""
    return sorted(p.name for p in (repo / directory).rglob("*") if p.is_file())


def listed(cli: Cli, repo: Path, kind: str) -> list[str]:
    return ok(cli("list", "-r", repo, kind)).stdout.splitlines()


def cat(cli: Cli, repo: Path, *args: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(ok(cli("cat", "-r", repo, *args)).stdout)
    return document


def test_list_prints_one_id_per_line_as_stored(history: History, cli: Cli) -> None:
    repo = Path(history.repo)
    assert listed(cli, repo, "snapshots") == sorted([history.first, history.second])
    assert listed(cli, repo, "index") == stored(repo, "index")
    assert listed(cli, repo, "keys") == stored(repo, "keys")
    assert listed(cli, repo, "packs") == sorted(stored(repo, "data") + stored(repo, "tree"))
    assert listed(cli, repo, "locks") == []
    blobs = listed(cli, repo, "blobs")
    assert {line.split()[0] for line in blobs} == {"data", "tree"}
    # 5 file contents in the first snapshot, 3 new ones in the second (history_harness).
    assert sum(line.startswith("data ") for line in blobs) == 8
    assert json.loads(ok(cli("list", "-r", repo, "--json", "snapshots")).stdout) == {
        "event": "list",
        "kind": "snapshots",
        "ids": sorted([history.first, history.second]),
    }


def test_cat_decrypts_each_kind_of_object(history: History, cli: Cli) -> None:
    repo = Path(history.repo)
    config = cat(cli, repo, "config")
    assert len(config["repository_id"]) == 64
    assert config["pack_size"] == 16 * 1024 * 1024

    snapshot = cat(cli, repo, "snapshot", history.second[:6])
    assert snapshot == cat(cli, repo, "snapshot", "latest")
    assert snapshot["id"] == history.second
    assert snapshot["paths"] == [history.path("")]
    assert snapshot["parent"] == history.first

    root = cat(cli, repo, "tree", snapshot["tree"][:10])
    assert root["id"] == snapshot["tree"]
    assert [n["type"] for n in root["nodes"]] == ["dir"]

    index_ids = listed(cli, repo, "index")
    indexed = {p["id"] for i in index_ids for p in cat(cli, repo, "index", i)["packs"]}
    assert indexed == set(listed(cli, repo, "packs"))

    pack = listed(cli, repo, "packs")[0]
    header = cat(cli, repo, "pack", pack)
    assert header["size"] == (repo / header["name"]).stat().st_size
    assert header["blobs"] and all(b["type"] in ("data", "tree") for b in header["blobs"])

    [key] = listed(cli, repo, "keys")
    assert cat(cli, repo, "key", key[:8])["kdf"] == "argon2id"


def test_cat_a_lock_held_by_another_host(history: History, cli: Cli) -> None:
    lock_id = store_lock(history.repo, exclusive=True, at=1.0e9)

    assert listed(cli, history.repo, "locks") == [lock_id]
    assert cat(cli, history.repo, "lock", lock_id[:8]) == {
        "id": lock_id, "host": "nas", "pid": 4242, "user": "backup", "time": 1.0e9,
        "exclusive": True, "purpose": "prune", "started": 1.0e9,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("cat", "blob", "ab"), 2, "cat: unknown kind 'blob'"),
        (("cat", "snapshot"), 2, "cat snapshot: an ID is required"),
        (("cat", "snapshot", "xyz"), 2, "an ID is hex digits"),
        (("cat", "snapshot", "00000000"), 1, "no snapshot matches '00000000'"),
        (("cat", "pack", "ffffffff"), 1, "no pack matches 'ffffffff'"),
        (("list", "trees"), 2, "list: unknown kind 'trees'"),
    ],
)
def test_cat_and_list_errors(
    history: History, cli: Cli, args: tuple[str, ...], code: int, message: str
) -> None:
    result = cli(*args, "-r", history.repo)

    assert result.exit_code == code, result
    assert message in result.stderr


def test_cache_shows_sizes_and_cleanup_removes_only_old_caches(
    history: History, cli: Cli, isolated_env: Path
) -> None:
    root = isolated_env / ".cache" / "bbackup"
    repository_id = cat(cli, history.repo, "config")["repository_id"]
    old = root / ("0" * 64)
    (old / "snapshots").mkdir(parents=True)
    (old / "snapshots" / "x").write_bytes(b"y" * 1000)
    forty_days_ago = time.time() - 40 * 86400
    os.utime(old, (forty_days_ago, forty_days_ago))

    shown = ok(cli("cache", "--json")).event("caches")
    assert shown["root"] == str(root)
    caches = {c["repository_id"]: c for c in shown["caches"]}
    assert set(caches) == {repository_id, "0" * 64}
    assert caches["0" * 64]["size"] == 1000
    assert caches["0" * 64]["age_days"] == 40.0
    assert caches[repository_id]["size"] > 0
    assert caches[repository_id]["age_days"] == 0.0

    kept = ok(cli("cache", "--cleanup", "--max-age", "60", "--json")).event("cache_cleanup")
    assert kept["removed"] == []
    cleaned = ok(cli("cache", "--cleanup"))
    assert f"removed {old} (1000 B, last used 40 days ago)" in cleaned.stdout
    assert "removed 1 caches not used for 30 days" in cleaned.stdout
    assert not old.exists()
    assert (root / repository_id).is_dir()
    ok(cli("snapshots", "-r", history.repo))  # the repository's own cache still works


def test_cache_without_a_cache_directory_shows_none(tmp_path: Path, cli: Cli) -> None:
    result = ok(cli("cache", "--cache-dir", tmp_path / "nothing", "--json"))

    assert result.event("caches")["caches"] == []
