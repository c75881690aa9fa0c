"""Reading archived packs from the command line: the `--restore-tier`, `--restore-days` and
`--no-wait` options, the thaw that a read meeting an archived pack starts (the estimate
printed before any restore request; alone with `--dry-run`), the wait's progress lines,
and `--no-wait`'s message and exit code (19, ARCHIVED: restores are requested or under
way; run the same command again later)."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Collection
from typing import Annotated, Any

import typer

from bbackup.cli.output import echo, emit_json, warn
from bbackup.cli.price_table import load_prices
from bbackup.errors import ExitCode, UsageError
from bbackup.ops.cost_estimates import ThawEstimate
from bbackup.ops.pricing import RESTORE_TIERS, tier_offered
from bbackup.ops.thaw import (
    DEFAULT_POLL_SECONDS,
    ArchivedPackSource,
    PackNames,
    ThawOnArchivedRead,
    ThawOptions,
    ThawProgress,
    pack_names,
    request_restores,
    survey_packs,
    wait_for_restores,
)
from bbackup.report_format import human_bytes, utc_minute

TierOpt = Annotated[
    str,
    typer.Option(
        "--restore-tier",
        metavar="TIER",
        help="S3 restore tier for packs in GLACIER or DEEP_ARCHIVE: bulk (cheapest, "
        "slowest), standard or expedited (GLACIER only).",
    ),
]
DaysOpt = Annotated[
    int,
    typer.Option(
        "--restore-days",
        min=1,
        max=365,
        metavar="DAYS",
        help="Days the restored copies of archived packs stay readable.",
    ),
]
NoWaitOpt = Annotated[
    bool,
    typer.Option(
        "--no-wait",
        help="Request restores of archived packs and exit with code 19; run the same "
        "command again once they are ready.",
    ),
]


def thaw_options(tier: str, days: int, no_wait: bool) -> ThawOptions:
    """The thaw settings from the flags and BBACKUP_THAW_POLL_SECONDS (the first interval
    between looks at pending restores; default 60 s, doubling up to 15 min)."""
    tier = tier.strip().lower()
    if tier not in RESTORE_TIERS:
        raise UsageError(f"--restore-tier must be one of {', '.join(RESTORE_TIERS)}, not {tier!r}")
    poll = DEFAULT_POLL_SECONDS
    value = os.environ.get("BBACKUP_THAW_POLL_SECONDS", "").strip()
    if value:
        try:
            poll = float(value)
        except ValueError:
            poll = 0.0
        if not 0 < poll < float("inf"):
            raise UsageError(
                f"BBACKUP_THAW_POLL_SECONDS={value!r} is not a number of seconds above 0"
            )
    return ThawOptions(tier=tier, days=days, wait=not no_wait, poll_seconds=poll)


async def thaw_before_reading(
    repo: ArchivedPackSource,
    names: PackNames,
    options: ThawOptions,
    *,
    as_json: bool,
    dry_run: bool = False,
) -> bool:
    """Make the packs `names` readable for a command that reads them: the first read that
    meets an archived pack thaws them all (prints the estimate, requests the restores not
    yet requested and waits for all, or with --no-wait exits 19) and reads again; where
    nothing is archived nothing is looked at. With `dry_run`, the estimate is printed now
    (a look at every pack) and False returned: nothing is asked."""
    if dry_run:
        prices = load_prices()
        survey = await survey_packs(
            repo, await pack_names(names), prices, tier=options.tier, days=options.days
        )
        _report_estimate(survey.estimate, as_json, priced=repo.profile.remote)
        return False
    if not repo.profile.restore_requests:
        return True
    # The thaw's lines go where this command's lines go now (dump: stderr, stdout carrying
    # the dump), not wherever stdout points when a read meets an archived pack.
    out = sys.stdout

    async def thaw(wanted: set[str]) -> None:
        with contextlib.redirect_stdout(out):
            await _thaw(repo, wanted, options, as_json=as_json)

    repo.on_archived_read = ThawOnArchivedRead(names, thaw)
    return True


async def _thaw(
    repo: ArchivedPackSource, names: Collection[str], options: ThawOptions, *, as_json: bool
) -> None:
    """Survey `names`, print the estimate, request the restores not yet requested and wait
    for all (or, with --no-wait, exit 19)."""
    prices = load_prices()
    survey = await survey_packs(repo, names, prices, tier=options.tier, days=options.days)
    if not survey.archived:
        return
    unoffered = sorted(
        {
            o.storage_class
            for o in survey.to_request
            if not tier_offered(prices, o.storage_class, options.tier)
        }
    )
    if unoffered:
        offered = [t for t in RESTORE_TIERS if all(tier_offered(prices, c, t) for c in unoffered)]
        raise UsageError(
            f"--restore-tier {options.tier} is not offered for {', '.join(unoffered)}; "
            f"use {' or '.join(offered) or 'another tier'}"
        )
    _report_estimate(survey.estimate, as_json)
    requested = await request_restores(repo, survey, options)
    already = len(survey.archived) - len(requested)
    slowest = survey.estimate.wait_hours
    if not options.wait:
        message = _come_back_message(survey.estimate, len(requested), already, slowest)
        if as_json:
            emit_json(
                {
                    "event": "thaw_requested",
                    "requested": [o.name for o in requested],
                    "already_under_way": already,
                    "wait_hours": list(slowest) if slowest else None,
                    "exit_code": ExitCode.ARCHIVED,
                    "message": message,
                }
            )
        else:
            warn(message)
        raise typer.Exit(ExitCode.ARCHIVED)
    what = f"requested {len(requested)} restores" if requested else "requested nothing new"
    if already:
        what += f", {already} already under way"
    message = (
        f"waiting for {len(survey.archived)} archived packs to be restored ({what}); "
        "interrupting is safe: a re-run resumes without new requests"
    )
    if as_json:
        emit_json({"event": "thaw_waiting", "message": message})
    else:
        warn(message)

    def on_progress(progress: ThawProgress) -> None:
        values: dict[str, Any] = {
            "packs": progress.packs,
            "ready": progress.ready,
            "bytes": progress.bytes,
            "bytes_ready": progress.bytes_ready,
            "requested": progress.requested,
            "next_look_seconds": progress.next_look_seconds,
            "seconds": round(time.monotonic() - progress.started, 3),
        }
        if as_json:
            emit_json({"event": "thaw_status", **values})
        elif progress.ready < progress.packs:
            warn(
                f"archive restores: {progress.ready}/{progress.packs} packs ready "
                f"({human_bytes(progress.bytes_ready)} of {human_bytes(progress.bytes)}); "
                f"next look in {_duration(progress.next_look_seconds)}"
            )
        else:
            warn(f"archive restores: all {progress.packs} packs ready")

    await wait_for_restores(
        repo, survey, options, requested=len(requested), on_progress=on_progress
    )


def _come_back_message(
    estimate: ThawEstimate, requested: int, already: int, hours: tuple[float, float] | None
) -> str:
    parts = []
    if requested:
        size = sum(c.bytes_to_request for c in estimate.classes)
        parts.append(
            f"requested restores of {requested} archived packs ({human_bytes(size)}, "
            f"{estimate.tier} tier, readable for {estimate.days} days)"
        )
    if already:
        parts.append(f"{already} restores were already under way")
    if hours is None:
        when = ": run the same command again later"
    else:
        after = utc_minute(time.time() + hours[1] * 3600)
        when = (
            f"; expect them within {_hours(hours)}, after about {after}: "
            "run the same command again then"
        )
    return "; ".join(parts) + when + " (nothing is requested twice)"


def _report_estimate(estimate: ThawEstimate, as_json: bool, *, priced: bool = True) -> None:
    if as_json:
        emit_json({"event": "thaw_estimate", **estimate.to_dict()})
        return
    objects = sum(c.objects for c in estimate.classes)
    size = sum(c.bytes for c in estimate.classes)
    echo(f"reading {objects} packs ({human_bytes(size)}):")
    for c in estimate.classes:
        if c.wait_hours is None and not (c.to_request or c.in_progress or c.restored):
            how = "read directly"
        else:
            how = f"to thaw {c.to_request} ({human_bytes(c.bytes_to_request)})"
            if c.in_progress:
                how += f", {c.in_progress} under way"
            if c.restored:
                how += f", {c.restored} restored"
        echo(f"  {c.storage_class:<14} {c.objects:>6} packs {human_bytes(c.bytes):>12}  {how}")
    if not priced:
        echo("a local repository: nothing to thaw, nothing to pay")
        return
    retrieval = sum(c.retrieval_usd for c in estimate.classes)
    requests = sum(c.request_usd for c in estimate.classes)
    copies = sum(c.temporary_copy_usd for c in estimate.classes)
    line = (
        f"cost with the {estimate.tier} tier: retrieval {_usd(retrieval)}, requests "
        f"{_usd(requests)}, restored copies for {estimate.days} days {_usd(copies)}"
    )
    if estimate.objects_to_request and estimate.wait_hours is not None:
        line += f"; readable within {_hours(estimate.wait_hours)}"
    echo(line)
    for tier, figures in estimate.tiers.items():
        echo(
            f"  {tier:<10} tier: {_usd(figures['thaw_usd'])} to thaw, "
            f"readable within {_within(figures['slowest_hours'])}"
        )
    echo(f"download to the internet: {_usd(estimate.transfer_usd)}")
    exposure = sum(c.early_deletion_usd for c in estimate.classes)
    echo(f"early-deletion exposure (if these packs were deleted now): {_usd(exposure)}")
    echo(f"prices: {estimate.prices_source}, taken {estimate.prices_taken}")


def _usd(amount: float) -> str:
    return f"${amount:.4f}" if amount < 1 else f"${amount:,.2f}"


def _hours(hours: tuple[float, float]) -> str:
    low, high = hours
    if high < 1:
        return f"{low * 60:.0f}-{high * 60:.0f} minutes"
    return f"{low:g}-{high:g} hours" if low else f"{high:g} hours"


def _within(hours: float) -> str:
    return f"{hours * 60:.0f} minutes" if hours < 1 else f"{hours:g} hours"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.3g}s"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"
