"""The --json shapes of diff, find, tag, rewrite, cat, list and cache, as docs/json.md
documents them: every field named there, and no other."""

from __future__ import annotations

import json
from pathlib import Path

from cli_harness import Cli, MakeTree
from history_harness import make_history, ok

COUNTS = {"files", "dirs", "others", "data_blobs", "tree_blobs", "bytes"}
CACHE = {"repository_id", "path", "size", "last_used", "age_days"}


def test_json_shapes_of_the_everyday_commands(
    tmp_path: Path, repo: Path, cli: Cli, make_tree: MakeTree
) -> None:
    h = make_history(tmp_path, repo, cli, make_tree)

    diff = ok(cli("diff", "-r", repo, "--json", h.first, h.second)).events()
    assert {tuple(sorted(e)) for e in diff[:-1]} == {
        ("event", "modifier", "path", "size_after", "size_before", "type")
    }
    assert set(diff[-1]) == {
        "event", "source_snapshot", "target_snapshot", "changed_files", "added", "removed"
    }  # fmt: skip
    assert set(diff[-1]["added"]) == set(diff[-1]["removed"]) == COUNTS

    [found] = ok(cli("find", "-r", repo, "--json", "notes.txt")).events()
    assert set(found) == {"event", "snapshot", "short_id", "time", "host", "hits", "matches"}
    assert set(found["matches"][0]) == {"path", "type", "size", "mode", "mtime_ns"}

    [tag] = ok(cli("tag", "-r", repo, "--json", h.first, "--add", "t")).events()
    assert set(tag) == {"event", "changed", "unchanged"}
    assert set(tag["changed"][0]) == {"old", "new", "tags"}

    [rewrite] = ok(cli("rewrite", "-r", repo, "--json", "latest", "-e", ".env")).events()
    assert set(rewrite) == {
        "event", "dry_run", "rewritten", "unchanged", "emptied", "forgotten"
    }  # fmt: skip
    assert set(rewrite["rewritten"][0]) == {"original", "new", "removed"}

    snapshot = json.loads(ok(cli("cat", "-r", repo, "--json", "snapshot", "latest")).stdout)
    assert set(snapshot) == {
        "id", "time", "host", "user", "paths", "tags", "tree", "type", "parent", "base",
        "program_version", "excludes", "summary",
    }  # fmt: skip
    config = json.loads(ok(cli("cat", "-r", repo, "--json", "config")).stdout)
    assert set(config) == {"repository_id", "version", "chunker", "compression_level", "pack_size"}
    tree = json.loads(ok(cli("cat", "-r", repo, "--json", "tree", snapshot["tree"])).stdout)
    assert set(tree) == {"id", "nodes"}
    assert set(tree["nodes"][0]) == {
        "name", "type", "mode", "uid", "gid", "user", "group", "mtime_ns", "atime_ns",
        "ctime_ns", "size", "inode", "device", "nlink", "subtree",
    }  # fmt: skip
    [index_id, *_] = ok(cli("list", "-r", repo, "index")).stdout.split()
    index = json.loads(ok(cli("cat", "-r", repo, "--json", "index", index_id)).stdout)
    assert set(index) == {"id", "packs", "supersedes", "marked"}
    assert set(index["packs"][0]) == {"id", "type", "size", "blobs"}
    assert set(index["packs"][0]["blobs"][0]) == {"id", "offset", "length", "raw_length"}
    pack = json.loads(ok(cli("cat", "-r", repo, "--json", "pack", index["packs"][0]["id"])).stdout)
    assert set(pack) == {"id", "name", "size", "blobs"}
    assert set(pack["blobs"][0]) == {"type", "id", "offset", "length", "raw_length"}

    [listing] = ok(cli("list", "-r", repo, "--json", "blobs")).events()
    assert set(listing) == {"event", "kind", "blobs"}
    assert set(listing["blobs"][0]) == {"type", "id"}

    [caches] = ok(cli("cache", "--json")).events()
    assert set(caches) == {"event", "root", "caches"}
    assert set(caches["caches"][0]) == CACHE
    [cleanup] = ok(cli("cache", "--json", "--cleanup")).events()
    assert set(cleanup) == {"event", "root", "max_age_days", "removed", "kept"}
    assert set(cleanup["kept"][0]) == CACHE
