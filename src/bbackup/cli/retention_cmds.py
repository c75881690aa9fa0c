"""`bbackup forget` and `bbackup prune`: retention policies and reclaiming space."""

from __future__ import annotations

import re
from typing import Annotated, Any

import typer

from bbackup.cli.opening import with_repo
from bbackup.cli.options import GlobalOptions, repo_command
from bbackup.cli.output import echo, emit_json, human_bytes, warn
from bbackup.cli.snapshot_selection import HostOpt, PathOpt, TagOpt, snapshot_filter
from bbackup.durations import Duration, parse_duration
from bbackup.errors import UsageError
from bbackup.ops.forget import ForgetGroup, apply_forget, describe_group, plan_forget
from bbackup.ops.prune import PruneOptions, PruneReport, prune
from bbackup.repository import Repository
from bbackup.snapshot.retention import (
    RetentionPolicy,
    parse_count,
    parse_group_by,
    parse_tag_list,
)


def parse_elapsed_seconds(text: str, flag: str) -> int:
    """A duration flag that is elapsed time, such as `24h`, `90min` or `1d12h`, in seconds.

    Months and years are refused: a grace period is a fixed number of seconds.
    """
    try:
        return parse_duration(text).total_seconds()
    except ValueError as exc:
        raise UsageError(f"{flag}: {exc}") from None


def parse_percent(text: str, flag: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)%?", text.strip())
    if not m or not 0 <= float(m.group(1)) <= 100:
        raise UsageError(f"{flag} {text!r}: use a percentage such as 5%")
    return float(m.group(1)) / 100


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


def print_prune(report: PruneReport, as_json: bool) -> None:
    if as_json:
        emit_json({"event": "prune", **report.to_dict()})
        return
    for action in ("delete", "drop-from-index", "mark", "keep-marked", "unmark", "repack", "keep"):
        totals = report.packs.get(action)
        if totals:
            echo(f"{action:>16}: {totals['packs']:>6} packs {human_bytes(totals['bytes']):>12}")
    verb = "would reclaim" if report.dry_run else "reclaimed"
    echo(f"{verb} {human_bytes(report.bytes_reclaimed)}")
    if report.bytes_repacked_written:
        echo(f"repacked into {human_bytes(report.bytes_repacked_written)} of new packs")
    if pending := report.pending_line():
        echo(pending)
    if report.early_delete_charge_usd:
        echo(
            f"early-deletion charge for objects younger than their storage class minimum: "
            f"about ${report.early_delete_charge_usd:.4f}"
        )


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
    ) -> None:
        options = PruneOptions(
            dry_run=dry_run,
            grace_seconds=parse_elapsed_seconds(grace, "--grace"),
            max_unused=parse_percent(max_unused, "--max-unused"),
            connections=opts.connections or 4,
        )
        report = with_repo(opts, lambda repo: prune(repo, options))
        print_prune(report, opts.json)

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
        prune_options = PruneOptions(
            grace_seconds=parse_elapsed_seconds(grace, "--grace"),
            max_unused=parse_percent(max_unused, "--max-unused"),
            connections=opts.connections or 4,
        )

        async def work(repo: Repository) -> tuple[list[ForgetGroup], int, PruneReport | None]:
            groups = await plan_forget(
                repo, policy, group_by=fields, filters=filters, allow_remove_all=allow_remove_all
            )
            if dry_run:
                return groups, 0, None
            removed = await apply_forget(repo, groups)
            report = await prune(repo, prune_options) if prune_after and removed else None
            return groups, removed, report

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
