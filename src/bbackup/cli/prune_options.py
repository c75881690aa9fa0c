"""Prune's flags and report, shared by `bbackup prune` and `bbackup forget --prune`:
parsing the grace period and the repack threshold, and printing what prune did."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from bbackup.cli.output import echo, emit_json
from bbackup.durations import parse_duration
from bbackup.errors import UsageError
from bbackup.report_format import human_bytes
from bbackup.storage import ARCHIVE_CLASSES

if TYPE_CHECKING:
    from bbackup.ops.prune_report import PruneReport


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


def print_prune(report: PruneReport, as_json: bool) -> None:
    if as_json:
        emit_json({"event": "prune", **report.to_dict()})
        return
    for action in ("delete", "drop-from-index", "mark", "keep-marked", "unmark", "repack", "keep"):
        totals = report.packs.get(action)
        if totals:
            echo(f"{action:>16}: {totals['packs']:>6} packs {human_bytes(totals['bytes']):>12}")
    archived = [
        d
        for d in report.decisions
        if d["action"] == "keep" and d["storage_class"] in ARCHIVE_CLASSES and d["used_bytes"]
    ]
    if archived:
        echo(
            f"kept {len(archived)} partly unused packs in an archive tier "
            f"({human_bytes(sum(d['size'] for d in archived))}): prune never reads archived "
            "packs to repack them"
        )
    verb = "would reclaim" if report.dry_run else "reclaimed"
    echo(f"{verb} {human_bytes(report.bytes_reclaimed)}")
    if report.bytes_repacked_written:
        echo(f"repacked into {human_bytes(report.bytes_repacked_written)} of new packs")
    if pending := report.pending_line():
        echo(pending)
    if report.damage_records_removed:
        count = len(report.damage_records_removed)
        echo(f"removed {count} damage record{'s' if count != 1 else ''}: their packs are gone")
    for line in report.versioned.lines() if report.versioned else ():
        echo(line)
    if report.early_delete_charge_usd:
        echo(
            f"early-deletion charge for objects younger than their storage class minimum: "
            f"about ${report.early_delete_charge_usd:.4f}"
        )
