"""`bbackup forget`: remove snapshots according to a retention policy, then prune if asked."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from bbackup.cli.opening import with_repo
from bbackup.cli.options import GlobalOptions, repo_command
from bbackup.cli.output import echo, emit_json, warn
from bbackup.cli.prune_options import parse_elapsed_seconds, parse_percent, print_prune
from bbackup.cli.snapshot_selection import HostOpt, PathOpt, TagOpt, snapshot_filter
from bbackup.durations import Duration, parse_duration
from bbackup.errors import UsageError
from bbackup.ops.forget import ForgetGroup, apply_forget, describe_group, plan_forget
from bbackup.repository import Repository
from bbackup.snapshot.retention import (
    RetentionPolicy,
    parse_count,
    parse_group_by,
    parse_tag_list,
)

if TYPE_CHECKING:
    from bbackup.ops.prune_report import PruneReport


def _usage(fn: Any, text: str, flag: str) -> Any:
    try:
        return fn(text)
    except ValueError as exc:
        raise UsageError(f"{flag} {text!r}: {exc}") from None


def _count(text: str | None, flag: str) -> int:
    return 0 if text is None else int(_usage(parse_count, text, flag))


def _window(text: str | None, flag: str) -> Duration | None:
    if text is None:
        return None
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise UsageError(f"{flag}: {exc}") from None


Count = Annotated[str | None, typer.Option(help="How many to keep (a number or 'unlimited').")]
Window = Annotated[
    str | None, typer.Option(help="Duration such as 30d or 1y2mo, back from the newest snapshot.")
]


def register(app: typer.Typer) -> None:
    @repo_command(app, "forget", help="Remove snapshots according to a retention policy.")
    def forget(
        opts: GlobalOptions,
        keep_last: Count = None,
        keep_hourly: Count = None,
        keep_daily: Count = None,
        keep_weekly: Count = None,
        keep_monthly: Count = None,
        keep_yearly: Count = None,
        keep_within: Window = None,
        keep_within_hourly: Window = None,
        keep_within_daily: Window = None,
        keep_within_weekly: Window = None,
        keep_within_monthly: Window = None,
        keep_within_yearly: Window = None,
        keep_tag: Annotated[
            list[str] | None, typer.Option(help="Always keep snapshots with these tags.")
        ] = None,
        group_by: Annotated[
            str, typer.Option(help="Group snapshots by host, paths and/or tags.")
        ] = "host,paths",
        host: HostOpt = None,
        tag: TagOpt = None,
        path: PathOpt = None,
        dry_run: Annotated[
            bool, typer.Option("--dry-run", "-n", help="Only show what would be removed.")
        ] = False,
        allow_remove_all: Annotated[
            bool, typer.Option(help="Allow removing every snapshot of a group.")
        ] = False,
        prune_after: Annotated[bool, typer.Option("--prune", help="Run prune afterwards.")] = False,
        max_unused: Annotated[str, typer.Option(help="With --prune: repack threshold.")] = "5%",
        grace: Annotated[str, typer.Option(help="With --prune: grace period.")] = "24h",
        check_times: Annotated[
            bool | None,
            typer.Option(
                "--check-times/--trust-times",
                help="Keep snapshots whose time the store contradicts outside the policy "
                "(default: on for object-locked repositories; docs/immutability.md).",
            ),
        ] = None,
        time_tolerance: Annotated[
            str, typer.Option(help="With --check-times: how far a time may be off.")
        ] = "1d",
    ) -> None:
        policy = RetentionPolicy(
            last=_count(keep_last, "--keep-last"),
            hourly=_count(keep_hourly, "--keep-hourly"),
            daily=_count(keep_daily, "--keep-daily"),
            weekly=_count(keep_weekly, "--keep-weekly"),
            monthly=_count(keep_monthly, "--keep-monthly"),
            yearly=_count(keep_yearly, "--keep-yearly"),
            within=_window(keep_within, "--keep-within"),
            within_hourly=_window(keep_within_hourly, "--keep-within-hourly"),
            within_daily=_window(keep_within_daily, "--keep-within-daily"),
            within_weekly=_window(keep_within_weekly, "--keep-within-weekly"),
            within_monthly=_window(keep_within_monthly, "--keep-within-monthly"),
            within_yearly=_window(keep_within_yearly, "--keep-within-yearly"),
            keep_tags=tuple(_usage(parse_tag_list, t, "--keep-tag") for t in keep_tag or []),
        )
        fields = _usage(parse_group_by, group_by, "--group-by")
        filters = snapshot_filter(host, tag, path)
        grace_seconds = parse_elapsed_seconds(grace, "--grace")
        max_unused_fraction = parse_percent(max_unused, "--max-unused")
        tolerance = parse_elapsed_seconds(time_tolerance, "--time-tolerance")

        async def work(repo: Repository) -> tuple[list[ForgetGroup], int, PruneReport | None]:
            checking = repo.config.object_lock is not None if check_times is None else check_times
            groups = await plan_forget(
                repo,
                policy,
                group_by=fields,
                filters=filters,
                allow_remove_all=allow_remove_all,
                check_times=tolerance if checking else None,
            )
            if dry_run:
                return groups, 0, None
            removed = await apply_forget(repo, groups)
            if not (prune_after and removed):
                return groups, removed, None
            # Imported here: only `forget --prune` pays for loading prune's code at start-up.
            from bbackup.ops.prune import prune
            from bbackup.ops.prune_input import PruneOptions

            options = PruneOptions(
                grace_seconds=grace_seconds,
                max_unused=max_unused_fraction,
                connections=opts.connections or 4,
            )
            return groups, removed, await prune(repo, options)

        groups, removed, report = with_repo(opts, work, load_index=prune_after)
        if opts.json:
            emit_json(
                {
                    "event": "forget",
                    "dry_run": dry_run,
                    "policy": str(policy),
                    "groups": [
                        {
                            "host": g.key.host,
                            "paths": list(g.key.paths),
                            "tags": list(g.key.tags),
                            "snapshots": [
                                {
                                    "id": d.snapshot.id,
                                    "time": d.snapshot.time.isoformat(),
                                    "keep": d.keep,
                                    "reasons": list(d.reasons),
                                }
                                for d in g.decisions
                            ],
                        }
                        for g in groups
                    ],
                    "removed": removed,
                }
            )
        else:
            echo(f"Applying policy: {policy}")
            for g in groups:
                echo(f"\nsnapshots for {describe_group(g.key)}:")
                for d in g.decisions:
                    action = "keep  " if d.keep else "remove"
                    when = d.snapshot.time.strftime("%Y-%m-%d %H:%M:%S")
                    echo(f"  {action} {d.snapshot.short_id} {when}  {', '.join(d.reasons)}")
            total = sum(len(g.removed) for g in groups)
            verb = "would remove" if dry_run else "removed"
            echo(f"\n{verb} {total if dry_run else removed} snapshots")
        if report is not None:
            print_prune(report, opts.json)
        elif prune_after and not dry_run and not removed:
            warn("nothing was removed; prune skipped")
