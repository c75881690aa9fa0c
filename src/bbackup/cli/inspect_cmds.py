"""`bbackup cat KIND [ID]` and `bbackup list KIND`: repository objects for debugging."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

from bbackup.cli.opening import with_repo
from bbackup.cli.options import GlobalOptions, repo_command
from bbackup.cli.output import echo, emit_json
from bbackup.errors import UsageError
from bbackup.ops.inspect import CAT_KINDS, LIST_KINDS, cat_object, list_ids
from bbackup.repository import Repository


def register(app: typer.Typer) -> None:
    @repo_command(
        app,
        "cat",
        short_help="Print a repository object decrypted, as JSON.",
        help=f"Print one repository object decrypted, as JSON ({', '.join(CAT_KINDS)}; a "
        "pack: its header). IDs may be unique prefixes.\n\nExample: bbackup cat snapshot 3f2a9c1b",
    )
    def cat(
        opts: GlobalOptions,
        kind: Annotated[str, typer.Argument(metavar="KIND", help=" | ".join(CAT_KINDS))],
        object_id: Annotated[
            str | None, typer.Argument(metavar="[ID]", help="The object's ID or a prefix.")
        ] = None,
    ) -> None:
        if kind not in CAT_KINDS:
            raise UsageError(f"cat: unknown kind {kind!r}: one of {', '.join(CAT_KINDS)}")

        async def work(repo: Repository) -> dict[str, Any]:
            return await cat_object(repo, kind, object_id)

        document = with_repo(opts, work, load_index=kind == "tree")
        if opts.json:
            emit_json(document)
        else:
            sys.stdout.write(json.dumps(document, indent=2, default=str) + "\n")

    @repo_command(
        app,
        "list",
        short_help="Print the IDs of every object of a kind, one per line.",
        help=f"Print the IDs of every object of a kind, one per line ({', '.join(LIST_KINDS)}; "
        "blobs: 'TYPE ID' from the index).\n\nExample: bbackup list snapshots",
    )
    def list_cmd(
        opts: GlobalOptions,
        kind: Annotated[str, typer.Argument(metavar="KIND", help=" | ".join(LIST_KINDS))],
    ) -> None:
        if kind not in LIST_KINDS:
            raise UsageError(f"list: unknown kind {kind!r}: one of {', '.join(LIST_KINDS)}")

        async def work(repo: Repository) -> list[str]:
            return await list_ids(repo, kind)

        ids = with_repo(opts, work, load_index=kind == "blobs")
        if opts.json:
            if kind == "blobs":
                pairs = (line.split(" ", 1) for line in ids)
                emit_json(
                    {
                        "event": "list",
                        "kind": kind,
                        "blobs": [{"type": t, "id": i} for t, i in pairs],
                    }
                )
            else:
                emit_json({"event": "list", "kind": kind, "ids": ids})
            return
        for line in ids:
            echo(line)
