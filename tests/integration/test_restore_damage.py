"""A restore goes past damaged data: a missing pack, a bit-flipped blob or an unreadable
tree costs only the files that need it. Everything else comes back byte-identical, the
damaged files are listed with the blobs they lack, none sits under its final name, and
the exit code is the integrity code."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cli_harness import Cli, MakeTree, restored_path
from restore_layout import Layout, flip_byte, read_layout

from bbackup.errors import ExitCode

KiB = 1024


@pytest.fixture
def backed_up(tmp_path: Path, cli: Cli, make_tree: MakeTree) -> tuple[Path, Path]:
    """(repository with 4 MiB packs, source): 24 one-blob files over several packs, a
    text file and a subdirectory."""
    repo = tmp_path / "repo"
    assert cli("init", "-r", repo, "--pack-size", "4").exit_code == 0
    spec: dict[str, object] = {
        f"f{i:02}.bin": os.urandom(300 * KiB + i * 7 * KiB) for i in range(24)
    }
    spec["notes.txt"] = "notes\n"
    spec["sub"] = {"inner.txt": "inner\n", "deep": {"leaf.bin": os.urandom(40 * KiB)}}
    src = make_tree(tmp_path / "src", spec)  # type: ignore[arg-type]
    assert cli("backup", "-r", repo, src).exit_code == 0
    return repo, src


def files_under(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_a_missing_and_a_bit_flipped_pack_cost_only_the_files_that_need_them(
    tmp_path: Path, cli: Cli, backed_up: tuple[Path, Path]
) -> None:
    repo, src = backed_up
    layout = read_layout(repo)
    data_packs = sorted({b.pack_path for blobs in layout.files.values() for b in blobs})
    assert len(data_packs) >= 3, data_packs
    deleted, flipped_pack = data_packs[0], data_packs[1]
    flipped = next(
        b for blobs in layout.files.values() for b in blobs if b.pack_path == flipped_pack
    )
    (repo / deleted).unlink()
    flip_byte(repo / flipped_pack, flipped.entry.offset + flipped.entry.length // 2)
    lost = {
        path
        for path, blobs in layout.files.items()
        if any(b.pack_path == deleted or b.blob_id == flipped.blob_id for b in blobs)
    }
    out = tmp_path / "out"

    result = cli("restore", "latest", "-r", repo, "--target", out, "--json")

    assert result.exit_code == ExitCode.INTEGRITY, result
    summary = result.event("summary")
    damaged = {d["path"]: d for d in summary["damaged"]}
    assert set(damaged) == {str(restored_path(out, Path(p))) for p in lost}
    problems = {b["pack"]: b["problem"] for d in damaged.values() for b in d["blobs"]}
    assert problems[deleted] == "pack is missing"
    assert problems[flipped_pack] == "fails authentication"
    flipped_in = [d for d in damaged.values() if flipped.blob_id.hex() in str(d["blobs"])]
    assert [b["id"] for b in flipped_in[0]["blobs"]] == [flipped.blob_id.hex()]
    restored = restored_path(out, src)
    for path, content in files_under(src).items():
        final = restored / path
        if str(src / path) in lost:
            assert not final.exists(), f"{path} sits under its final name"
            partial = Path(f"{final}.bbackup-partial")
            assert partial.stat().st_size == len(content)
            assert damaged[str(final)]["kept_as"] == str(partial)
        else:
            assert final.read_bytes() == content, path
    assert summary["files"] == len(files_under(src)) - len(lost)

    human = cli("restore", "latest", "-r", repo, "--target", tmp_path / "out2")
    assert human.exit_code == ExitCode.INTEGRITY, human
    lines = human.stderr.splitlines()
    for path in lost:
        where = restored_path(tmp_path / "out2", Path(path))
        [line] = [x for x in lines if x.startswith(f"damaged: {where}: ")]
        assert line.endswith(f"; kept as {where}.bbackup-partial"), line
        ids = [b.blob_id.hex()[:16] for b in layout.files[path]]
        assert f"lost 1 blob(s): {ids[0]} (" in line
    assert sum(x.startswith("damaged: ") for x in human.stderr.splitlines()) == len(lost)
    assert "Traceback" not in human.output


def test_a_partial_file_keeps_its_intact_blobs_and_holes_where_the_lost_ones_go(
    tmp_path: Path, cli: Cli, make_tree: MakeTree
) -> None:
    repo = tmp_path / "repo"
    assert cli("init", "-r", repo, "--pack-size", "4").exit_code == 0
    content = os.urandom(6 * 1024 * KiB)
    src = make_tree(tmp_path / "src", {"big.bin": content})
    assert cli("backup", "-r", repo, src).exit_code == 0
    blobs = read_layout(repo).files[str(src / "big.bin")]
    assert len(blobs) >= 3
    victim = blobs[1]
    flip_byte(repo / victim.pack_path, victim.entry.offset + 40)
    out = tmp_path / "out"

    result = cli("restore", "latest", "-r", repo, "--target", out)

    assert result.exit_code == ExitCode.INTEGRITY, result
    partial = Path(f"{restored_path(out, src)}/big.bin.bbackup-partial").read_bytes()
    start = blobs[0].entry.raw_length
    end = start + victim.entry.raw_length
    assert len(partial) == len(content)
    assert partial[:start] == content[:start] and partial[end:] == content[end:]
    assert partial[start:end] == bytes(end - start)


def test_an_unreadable_tree_costs_only_its_directory(
    tmp_path: Path, cli: Cli, backed_up: tuple[Path, Path]
) -> None:
    repo, src = backed_up
    layout = read_layout(repo)
    tree = layout.trees[str(src / "sub")]
    flip_byte(repo / tree.pack_path, tree.entry.offset + tree.entry.length // 2)
    out = tmp_path / "out"

    result = cli("restore", "latest", "-r", repo, "--target", out, "--json", "--no-cache")

    assert result.exit_code == ExitCode.INTEGRITY, result
    [damaged] = result.event("summary")["damaged_trees"]
    assert damaged["path"] == str(src / "sub") and damaged["tree"] == tree.blob_id.hex()
    restored = restored_path(out, src)
    expected = {p: c for p, c in files_under(src).items() if not p.startswith("sub/")}
    assert files_under(restored) == expected
    assert (restored / "sub").is_dir() and not any((restored / "sub").iterdir())


def test_a_pattern_that_matches_only_inside_an_unreadable_tree_reports_the_damage(
    tmp_path: Path, cli: Cli, backed_up: tuple[Path, Path]
) -> None:
    repo, src = backed_up
    layout: Layout = read_layout(repo)
    tree = layout.trees[str(src / "sub")]
    flip_byte(repo / tree.pack_path, tree.entry.offset + tree.entry.length // 2)

    result = cli(
        "restore", "latest", "-r", repo, "--target", tmp_path / "out", "--no-cache",
        "--include", "inner.txt",
    )  # fmt: skip

    assert result.exit_code == ExitCode.INTEGRITY, result
    assert f"damaged: {src / 'sub'}: its listing cannot be read" in result.stderr
