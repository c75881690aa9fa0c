"""`bbackup tag SNAP... --add/--remove/--set TAG`: change the tags of snapshots."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Annotated

import typer

from bbackup.cli.opening import with_repo
from bbackup.cli.options import GlobalOptions, repo_command
from bbackup.cli.output import echo, emit_json
from bbackup.cli.snapshot_selection import HostOpt, PathOpt, TagOpt, snapshot_filter
from bbackup.errors import UsageError
from bbackup.ops.tag import TagChange, TagReport, tag_snapshots
from bbackup.repository import Repository

TagValues = Annotated[list[str] | None, typer.Option(metavar="TAG")]


def _tags(values: list[str] | None) -> tuple[str, ...]:
    """Tags from repeated flags, each a comma list (as backup's --tag and restic's)."""
    return tuple(t.strip() for value in values or [] for t in value.split(",") if t.strip())


def register(app: typer.Typer) -> None:
    @repo_command(
        app,
        "tag",
        short_help="Add, remove or set the tags of snapshots.",
        help="Add, remove or set the tags of snapshots (all that --host/--tag/--path select "
        "when no SNAPSHOT is given). Each changed snapshot is stored anew under a new ID.\n\n"
        "Example: bbackup tag latest --add keep-forever",
    )
    def tag_cmd(
        opts: GlobalOptions,
        snapshots: Annotated[
            list[str] | None,
            typer.Argument(metavar="[SNAPSHOT]...", help="latest or ID prefixes."),
        ] = None,
        add: Annotated[
            list[str] | None, typer.Option("--add", metavar="TAG", help="Add tags (a,b).")
        ] = None,
        remove: Annotated[
            list[str] | None, typer.Option("--remove", metavar="TAG", help="Remove tags.")
        ] = None,
        set_: Annotated[
            list[str] | None,
            typer.Option("--set", metavar="TAG", help="Replace all tags ('' for none)."),
        ] = None,
        host: HostOpt = None,
        tag: TagOpt = None,
        path: PathOpt = None,
    ) -> None:
        if add is None and remove is None and set_ is None:
            raise UsageError("tag: give --add, --remove or --set")
        if set_ is not None and (add or remove):
            raise UsageError("tag: --set cannot be combined with --add or --remove")
        change = TagChange(
            add=_tags(add),
            remove=_tags(remove),
            set=None if set_ is None else _tags(set_),
        )
        filters = snapshot_filter(host, tag, path)

        def work(repo: Repository) -> Awaitable[TagReport]:
            return tag_snapshots(repo, snapshots or [], filters, change)

        report = with_repo(opts, work, load_index=False)
        if opts.json:
            emit_json(
                {
                    "event": "tag",
                    "changed": [
                        {"old": r.old, "new": r.new, "tags": r.tags} for r in report.changed
                    ],
                    "unchanged": report.unchanged,
                }
            )
            return
        for r in report.changed:
            echo(f"snapshot {r.old[:8]} is now {r.new[:8]}, tags: {', '.join(r.tags) or '(none)'}")
        echo(f"{len(report.changed)} snapshots changed, {len(report.unchanged)} unchanged")
