"""`bbackup repair versions --as-of TIME`: bring the repository's current view back to
what it was at TIME, from object versions (`ops.repair_versions`)."""

from __future__ import annotations

import tempfile
from typing import Annotated

import typer

from bbackup.cli.opening import with_repo
from bbackup.cli.options import GlobalOptions, parse_as_of, repo_command
from bbackup.cli.output import echo, emit_json
from bbackup.errors import UsageError
from bbackup.ops.repair_versions import RepairVersionsReport, repair_versions
from bbackup.repository import Repository
from bbackup.storage import iso_time


def register_versions(repair_app: typer.Typer) -> None:
    @repo_command(
        repair_app, "versions", help="Make the repository current as it was at --as-of TIME."
    )
    def versions(
        opts: GlobalOptions,
        dry_run: Annotated[
            bool, typer.Option("--dry-run", "-n", help="Only say what would be done.")
        ] = False,
    ) -> None:
        as_of = parse_as_of(opts.as_of)
        if as_of is None:
            raise UsageError("repair versions needs --as-of TIME: the moment to go back to")

        async def work(repo: Repository) -> RepairVersionsReport:
            store = repo.stack.versions
            if store is None:
                raise UsageError(f"{repo.location} has no object versions (S3 only)")
            return await repair_versions(
                repo,
                store,
                as_of,
                delete=repo.stack.backend.delete,
                dry_run=dry_run,
                connections=repo.stack.profile.default_connections,
            )

        # The repository opened as of TIME proves the password opens that view; a scratch
        # cache, so nothing cached from the vandalised view is trusted.
        with tempfile.TemporaryDirectory(prefix="bbackup-repair-") as scratch:
            opts.no_cache, opts.cache_dir = False, scratch
            report = with_repo(opts, work, load_index=False)
        if opts.json:
            emit_json(report.to_dict())
            return
        verb = "would" if dry_run else "did"
        echo(
            f"as of {iso_time(report.as_of)}: {verb} restore {len(report.restored)} objects "
            f"from their versions, hide {len(report.hidden)} newer ones; "
            f"{report.unchanged} were unchanged"
        )
        for name in report.hidden:
            echo(f"  hidden (delete marker, no version deleted): {name}")
        if report.newer_packs:
            echo(f"{report.newer_packs} packs written since are left for `bbackup prune`")
