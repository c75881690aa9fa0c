"""The options that pick snapshots (`--host`, `--tag`, `--path`), shared by the commands
that take a snapshot or a set of them."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from bbackup.snapshot.store import SnapshotFilter

HostOpt = Annotated[list[str] | None, typer.Option("--host", help="Only snapshots of this host.")]
TagOpt = Annotated[list[str] | None, typer.Option("--tag", help="Only snapshots with these tags.")]
PathOpt = Annotated[list[str] | None, typer.Option("--path", help="Only snapshots of these paths.")]


def snapshot_filter(
    host: list[str] | None, tag: list[str] | None, path: list[str] | None
) -> SnapshotFilter:
    return SnapshotFilter(
        tuple(host or ()), tuple(tag or ()), tuple(os.path.abspath(p) for p in path or ())
    )
