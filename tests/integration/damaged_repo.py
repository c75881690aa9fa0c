"""A local repository with one backup whose largest data pack has a bit flipped inside a
blob, and the small helpers its tests share: the starting point of the tests of check,
repair and backup past damage."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cli_harness import Cli, CliResult, MakeTree, Spec


@dataclass(frozen=True)
class DamagedRepo:
    repo: Path
    src: Path
    snapshot: str
    #: The data pack with a flipped bit, as `check` names it (data/ab/ab12…).
    damaged: str


def ok(result: CliResult) -> CliResult:
    assert result.exit_code == 0, result
    return result


def data_packs(repo: Path) -> list[Path]:
    return sorted(p for p in (repo / "data").rglob("*") if p.is_file())


def source_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def flip_bit(path: Path, offset: int) -> None:
    with path.open("r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ 0x04]))


def make_damaged_repo(tmp_path: Path, cli: Cli, make_tree: MakeTree, tree: Spec) -> DamagedRepo:
    """Back `tree` up into a new repository of 4 MiB packs (at least two data packs) and
    flip a bit a third into its largest data pack."""
    repo = tmp_path / "repo"
    ok(cli("init", "-r", repo, "--pack-size", "4"))
    src = make_tree(tmp_path / "src", tree)
    snapshot = ok(cli("backup", "-r", repo, "--json", src)).event("summary")["snapshot_id"]
    assert len(data_packs(repo)) >= 2
    largest = max(data_packs(repo), key=lambda p: p.stat().st_size)
    flip_bit(largest, largest.stat().st_size // 3)  # inside a blob: headers sit at the end
    return DamagedRepo(repo, src, snapshot, largest.relative_to(repo).as_posix())
