"""The --json shapes docs/json.md documents, pinned: the keys and their types that scripts
rely on, for snapshots, ls, backup, restore, check, forget, prune, key list, init, unlock
and the error event."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cli_harness import CHEAPEST_KDF, Cli, CliResult, MakeTree

OPT_STR = (str, type(None))
NUMBER = (int, float)
REQUESTS = dict.fromkeys(("PUT", "GET", "HEAD", "LIST", "DELETE", "RESTORE"), int)


def assert_shape(obj: Any, shape: dict[str, Any], where: str = "") -> None:
    """Every key of `shape` is in `obj` with a value of its type; a dict in `shape` is the
    shape of a nested object, a one-item list the shape of every item of a list."""
    assert isinstance(obj, dict), f"{where}: {obj!r} is not an object"
    missing = sorted(set(shape) - set(obj))
    assert not missing, f"{where}: missing {missing} in {obj}"
    for key, expected in shape.items():
        value, at = obj[key], f"{where}.{key}"
        if isinstance(expected, dict):
            assert_shape(value, expected, at)
        elif isinstance(expected, list):
            assert isinstance(value, list), f"{at}: {value!r} is not a list"
            for item in value:
                if isinstance(expected[0], dict):
                    assert_shape(item, expected[0], at)
                else:
                    assert isinstance(item, expected[0]), f"{at}: {item!r}"
        else:
            # bool is an int in Python: a count must not be a bool, a flag must be one.
            assert isinstance(value, expected) and not (
                isinstance(value, bool) and expected in (int, NUMBER)
            ), f"{at}: {value!r} is not {expected}"


def ok(result: CliResult) -> CliResult:
    assert result.exit_code == 0, result
    return result


@pytest.fixture
def history(tmp_path: Path, cli: Cli, repo: Path, make_tree: MakeTree) -> Path:
    """Two snapshots of a small tree; returns the tree."""
    src = make_tree(tmp_path / "src", {"a.txt": "alpha", "sub": {"b.txt": "beta"}})
    ok(cli("backup", "-r", repo, "--tag", "t1", src))
    (src / "a.txt").write_text("alpha two")
    ok(cli("backup", "-r", repo, src))
    return src


SUMMARY = {
    "type": str,
    "parent": OPT_STR,
    "files_new": int,
    "files_changed": int,
    "files_unchanged": int,
    "dirs": int,
    "total_files": int,
    "total_bytes": int,
    "bytes_read": int,
    "bytes_added": int,
    "bytes_stored": int,
    "packs_written": int,
    "errors": int,
    "duration_seconds": NUMBER,
}


def test_snapshots_is_one_array_with_restic_field_names(
    cli: Cli, repo: Path, history: Path
) -> None:
    result = ok(cli("snapshots", "-r", repo, "--json"))

    listed = json.loads(result.stdout)
    assert isinstance(listed, list) and len(listed) == 2
    for snapshot in listed:
        assert_shape(
            snapshot,
            {
                "id": str,
                "short_id": str,
                "time": str,
                "tree": str,
                "paths": [str],
                "hostname": str,
                "username": str,
                "tags": [str],
                "parent": OPT_STR,
                "program_version": str,
                "host": str,
                "user": str,
                "type": str,
                "base": OPT_STR,
                "original": OPT_STR,
                "summary": SUMMARY,
            },
            "snapshot",
        )
        assert snapshot["short_id"] == snapshot["id"][:8]
        assert (snapshot["hostname"], snapshot["username"]) == (
            snapshot["host"],
            snapshot["user"],
        )
    first, second = listed
    assert first["tags"] == ["t1"] and first["paths"] == [str(history)]
    assert second["parent"] == first["id"]


def test_ls_prints_one_node_object_per_line(cli: Cli, repo: Path, history: Path) -> None:
    result = ok(cli("ls", "-r", repo, "latest", history, "--json"))

    nodes = [json.loads(line) for line in result.stdout.splitlines()]
    node_shape = {
        "struct_type": str,
        "path": str,
        "name": str,
        "type": str,
        "mode": int,
        "uid": int,
        "gid": int,
        "user": str,
        "group": str,
        "size": int,
        "mtime_ns": int,
        "link_target": OPT_STR,
    }
    for node in nodes:
        assert_shape(node, node_shape, "node")
    assert [(n["name"], n["type"]) for n in nodes] == [
        ("src", "dir"),
        ("a.txt", "file"),
        ("sub", "dir"),
        ("b.txt", "file"),
    ]


def test_backup_summary_shape(cli: Cli, repo: Path, history: Path) -> None:
    summary = ok(cli("backup", "-r", repo, "--json", history)).event("summary")

    assert_shape(
        summary,
        {
            **SUMMARY,
            "snapshot_id": str,
            "packs_adopted": int,
            "bytes_adopted": int,
            "error_list": [{"path": str, "message": str}],
            "requests": {**REQUESTS, "bytes_up": int, "bytes_down": int},
        },
        "backup",
    )
    assert summary["files_unchanged"] == 2


def test_restore_summary_shape(tmp_path: Path, cli: Cli, repo: Path, history: Path) -> None:
    result = ok(cli("restore", "-r", repo, "latest", "--target", tmp_path / "out", "--json"))

    assert_shape(
        result.event("summary"),
        {
            "snapshot_id": str,
            "dry_run": bool,
            "files": int,
            "dirs": int,
            "links": int,
            "bytes": int,
            "bytes_reused": int,
            "bytes_to_download": int,
            "unchanged": int,
            "kept": int,
            "deleted": int,
            "errors": int,
            "skipped": int,
            "verified_files": int,
            "verified_bytes": int,
            "error_list": [dict],
            "skipped_list": [dict],
            "damaged": [dict],
            "damaged_trees": [dict],
            "verify_failures": [dict],
            "duration_seconds": NUMBER,
            "requests": REQUESTS,
        },
        "restore",
    )


def test_check_shape(cli: Cli, repo: Path, history: Path) -> None:
    check = ok(cli("check", "-r", repo, "--read-data", "--json")).event("check")

    assert_shape(
        check,
        {
            "ok": bool,
            "errors": [str],
            "warnings": [str],
            "snapshots": int,
            "trees": int,
            "blobs_referenced": int,
            "packs": int,
            "packs_read": int,
            "bytes_read": int,
            "requests": REQUESTS,
            "unindexed_packs": dict,
            "recorded_damage": list,
            "damage_record": OPT_STR,
        },
        "check",
    )
    assert check["ok"] is True and check["packs_read"] == check["packs"]


def test_forget_and_prune_shapes(cli: Cli, repo: Path, history: Path) -> None:
    result = ok(cli("forget", "-r", repo, "--keep-last", "1", "--prune", "--json"))

    forget = result.event("forget")
    assert_shape(
        forget,
        {
            "dry_run": bool,
            "policy": str,
            "removed": int,
            "groups": [
                {
                    "host": str,
                    "paths": [str],
                    "tags": [str],
                    "snapshots": [{"id": str, "time": str, "keep": bool, "reasons": [str]}],
                }
            ],
        },
        "forget",
    )
    assert forget["removed"] == 1
    assert_shape(
        result.event("prune"),
        {
            "dry_run": bool,
            "packs": dict,
            "bytes_reclaimed": int,
            "bytes_repacked_written": int,
            "early_delete_charge_usd": NUMBER,
            "decisions": [dict],
            "duration_seconds": NUMBER,
            "pending": dict,
        },
        "prune",
    )


def test_key_list_init_and_unlock_shapes(tmp_path: Path, cli: Cli) -> None:
    location = tmp_path / "fresh"
    init = ok(cli("init", "-r", location, *CHEAPEST_KDF, "--json")).event("initialized")
    keys = ok(cli("key", "list", "-r", location, "--json")).event("keys")
    unlock = ok(cli("unlock", "-r", location, "--json")).event("unlock")

    assert_shape(init, {"repository_id": str, "location": str}, "init")
    assert_shape(
        keys,
        {
            "keys": [
                {
                    "id": str,
                    "current": bool,
                    "created": str,
                    "hostname": str,
                    "username": str,
                    "kdf": str,
                }
            ]
        },
        "keys",
    )
    assert [k["current"] for k in keys["keys"]] == [True]
    assert_shape(unlock, {"removed": int, "unreadable": dict}, "unlock")


def test_an_error_is_one_json_event_on_stderr(tmp_path: Path, cli: Cli) -> None:
    result = cli("snapshots", "-r", tmp_path / "missing", "--json")

    assert result.exit_code == 10 and result.stdout == ""
    [line] = result.stderr.splitlines()
    error = json.loads(line)
    assert_shape(error, {"event": str, "message": str, "exit_code": int}, "error")
    assert (error["event"], error["exit_code"]) == ("error", 10)
