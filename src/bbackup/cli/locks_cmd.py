"""`bbackup locks extend`: keep the data kept snapshots need under object lock."""

from __future__ import annotations

from typing import Annotated

import typer

from bbackup.cli.opening import with_repo
from bbackup.cli.options import GlobalOptions, repo_command
from bbackup.cli.output import echo, emit_json, warn
from bbackup.cli.prune_options import parse_elapsed_seconds
from bbackup.errors import UsageError
from bbackup.ops.lock_extension import LockExtensionReport, extend_locks
from bbackup.repository import Repository
from bbackup.storage import iso_time


def register(app: typer.Typer) -> None:
    locks = typer.Typer(
        help="Object lock retention of the repository's objects.", no_args_is_help=True
    )
    app.add_typer(locks, name="locks")

    @repo_command(locks, "extend", help="Extend retention of live objects before it lapses.")
    def extend(
        opts: GlobalOptions,
        margin: Annotated[
            str | None,
            typer.Option(
                help="Extend retentions that end within this long (default: a third of the "
                "lock period, 10d for 30d)."
            ),
        ] = None,
        dry_run: Annotated[
            bool, typer.Option("--dry-run", "-n", help="Count, change nothing.")
        ] = False,
    ) -> None:
        margin_seconds = None if margin is None else parse_elapsed_seconds(margin, "--margin")
        report = with_repo(opts, lambda repo: run_extension(repo, margin_seconds, dry_run))
        print_extension(report, opts.json)


async def run_extension(
    repo: Repository, margin_seconds: float | None = None, dry_run: bool = False
) -> LockExtensionReport:
    """`locks extend` on an open repository (also run by `prune --extend-locks`)."""
    versions = repo.stack.versions
    if versions is None:
        raise UsageError(f"{repo.location} is not in S3: it has no object lock to extend")
    return await extend_locks(
        repo,
        versions,
        repo.config.object_lock,
        margin_seconds=margin_seconds,
        dry_run=dry_run,
        connections=repo.stack.profile.default_connections,
    )


def print_extension(report: LockExtensionReport, as_json: bool) -> None:
    if as_json:
        emit_json(report.to_dict())
        return
    if report.all_packs_live:
        warn(f"warning: {report.all_packs_live}; every pack was kept locked")
    verb = "would extend" if report.dry_run else "extended"
    echo(
        f"{verb} {len(report.extended)} of {report.live_objects} live objects to "
        f"{iso_time(report.retain_until)} ({report.setting.mode} mode); "
        f"{report.recent} were written recently enough to need no request"
    )
    requests = ", ".join(f"{n} {op}" for op, n in report.requests.items())
    echo(f"requests: {requests} (about ${report.cost_usd:.6f})")
