"""`bbackup prune`: delete unused data and repack mostly-unused packs."""

from __future__ import annotations

from typing import Annotated

import typer

from bbackup.cli.opening import with_repo
from bbackup.cli.options import GlobalOptions, repo_command
from bbackup.cli.prune_options import parse_elapsed_seconds, parse_percent, print_prune
from bbackup.errors import Permanent
from bbackup.ops.prune import prune
from bbackup.ops.prune_input import PruneOptions
from bbackup.ops.prune_report import PruneReport
from bbackup.repository import Repository
from bbackup.storage import VersionedStore


def register(app: typer.Typer) -> None:
    @repo_command(app, "prune", help="Delete unused data and repack mostly-unused packs.")
    def prune_cmd(
        opts: GlobalOptions,
        dry_run: Annotated[
            bool, typer.Option("--dry-run", "-n", help="Only show the plan.")
        ] = False,
        max_unused: Annotated[
            str, typer.Option(help="Repack packs with more unused than this.")
        ] = "5%",
        grace: Annotated[
            str,
            typer.Option(help="Delete marked packs after this long: 24h, 90min, 2d."),
        ] = "24h",
        extend_locks: Annotated[
            bool,
            typer.Option(
                "--extend-locks", help="Then run `locks extend` (object-locked repositories)."
            ),
        ] = False,
    ) -> None:
        options = PruneOptions(
            dry_run=dry_run,
            grace_seconds=parse_elapsed_seconds(grace, "--grace"),
            max_unused=parse_percent(max_unused, "--max-unused"),
            connections=opts.connections or 4,
        )

        async def work(repo: Repository) -> PruneReport:
            # On a versioned bucket deletes only hide packs behind delete markers: prune
            # then says when their space is really freed.
            options.versions = await versioned_store(repo)
            report = await prune(repo, options)
            if extend_locks and not dry_run:
                from bbackup.cli.locks_cmd import print_extension, run_extension

                print_extension(await run_extension(repo), opts.json)
            return report

        report = with_repo(opts, work)
        print_prune(report, opts.json)


async def versioned_store(repo: Repository) -> VersionedStore | None:
    """The repository's versioned store if its bucket keeps versions: always with object
    lock (its config says so), else as the bucket says (two GET requests; a credential
    that may not ask, or a store that cannot answer, counts as unversioned)."""
    versions = repo.stack.versions
    if versions is None or repo.config.object_lock is not None:
        return versions
    try:
        state = await versions.bucket_lock_state()
    except Permanent:
        return None
    return versions if state.versioned else None
