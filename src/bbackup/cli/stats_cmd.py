"""`bbackup stats [SNAPSHOT...]`: sizes, ratios, per-snapshot added and unique bytes, bytes
per storage class, and with `--cost` an estimated monthly bill."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from bbackup.cli.opening import with_repo
from bbackup.cli.options import GlobalOptions, repo_command
from bbackup.cli.output import echo, emit_json
from bbackup.cli.price_table import load_prices
from bbackup.cli.snapshot_selection import HostOpt, PathOpt, TagOpt, snapshot_filter
from bbackup.errors import UsageError
from bbackup.ops.cost_estimates import MonthlyCost, monthly_cost
from bbackup.ops.pricing import PriceTable
from bbackup.ops.stats import MODES, RepositoryStats, repository_stats
from bbackup.report_format import human_bytes
from bbackup.repository import Repository
from bbackup.snapshot.model import Snapshot
from bbackup.snapshot.store import find_snapshot, load_snapshots


def register(app: typer.Typer) -> None:
    @repo_command(app, "stats", help="Show sizes, ratios and storage classes of snapshots.")
    def stats(
        opts: GlobalOptions,
        snapshots: Annotated[
            list[str] | None,
            typer.Argument(metavar="[SNAPSHOT]...", help="Snapshots (default: all); latest."),
        ] = None,
        mode: Annotated[
            str,
            typer.Option(
                metavar="MODE",
                help="restore-size (what a restore writes), files-by-contents (each distinct "
                "file once) or raw-data (each blob once, as stored).",
            ),
        ] = "restore-size",
        cost: Annotated[
            bool, typer.Option("--cost", help="Add an estimated monthly bill.")
        ] = False,
        backups_per_month: Annotated[
            int, typer.Option(min=0, metavar="N", help="With --cost: backups a month.")
        ] = 30,
        host: HostOpt = None,
        tag: TagOpt = None,
        path: PathOpt = None,
    ) -> None:
        if mode not in MODES:
            raise UsageError(f"--mode must be one of {', '.join(MODES)}, not {mode!r}")
        filters = snapshot_filter(host, tag, path)
        prices = load_prices() if cost else None

        async def work(repo: Repository) -> tuple[RepositoryStats, Snapshot | None]:
            every = await load_snapshots(repo)
            if snapshots:
                chosen = {find_snapshot(every, ref, filters).id: None for ref in snapshots}
                selected = [s for s in every if s.id in chosen]
            else:
                selected = [s for s in every if filters.matches(s)]
            objects = [info async for info in repo.stack.storage.list("")]
            result = await repository_stats(repo, every, selected, objects, mode=mode)
            latest = max(every, key=lambda s: (s.time, s.id), default=None)
            return result, latest

        result, latest = with_repo(opts, work)
        bill = _bill(result, latest, prices, backups_per_month) if prices else None
        if opts.json:
            out: dict[str, Any] = {"event": "stats", **result.to_dict()}
            if bill is not None and prices is not None:
                out["cost"] = {
                    **bill.to_dict(),
                    "prices": {"source": prices.source, "taken": prices.taken},
                }
            emit_json(out)
            return
        _print(result, bill, prices)


def _bill(
    result: RepositoryStats, latest: Snapshot | None, prices: PriceTable, per_month: int
) -> MonthlyCost:
    summary = latest.summary if latest is not None else {}
    requests = summary.get("requests")
    return monthly_cost(
        {name: row["bytes"] for name, row in result.storage_classes.items()},
        prices,
        backup_requests=requests if isinstance(requests, dict) else {},
        data_storage_class=summary.get("storage_class"),
        data_puts=int(summary.get("packs_written", 0) or 0),
        backups_per_month=per_month,
    )


def _print(result: RepositoryStats, bill: MonthlyCost | None, prices: PriceTable | None) -> None:
    echo(f"snapshots: {result.snapshots_count}  mode: {result.mode}")
    if result.mode == "raw-data":
        echo(
            f"total size: {human_bytes(result.total_size)} stored, "
            f"{human_bytes(result.total_uncompressed_size)} uncompressed, "
            f"{result.total_blob_count} blobs"
        )
    else:
        echo(f"total size: {human_bytes(result.total_size)} in {result.total_file_count} files")
    echo(
        f"raw data: {human_bytes(result.raw_data_size)} in {result.blobs} blobs and "
        f"{result.packs} packs, {human_bytes(result.stored_size)} stored"
    )
    echo(
        f"deduplication ratio: {result.dedup_ratio:.2f}  "
        f"compression ratio: {result.compression_ratio:.2f}"
    )
    if result.snapshots:
        echo(f"{'ID':<10} {'Time':<26} {'Restore size':>13} {'Added':>12} {'Unique':>12}")
        for s in result.snapshots:
            echo(
                f"{s.id[:8]:<10} {s.time[:25]:<26} {human_bytes(s.restore_size):>13} "
                f"{human_bytes(s.added_size):>12} {human_bytes(s.unique_size):>12}"
            )
    echo("storage classes:")
    for name, row in sorted(result.storage_classes.items()):
        echo(f"  {name:<20} {row['objects']:>8} objects {human_bytes(row['bytes']):>12}")
    if bill is None or prices is None:
        return
    echo(f"estimated monthly cost (prices: {prices.source}, taken {prices.taken}):")
    for name, usd in sorted(bill.storage_usd.items()):
        echo(f"  storage {name:<20} ${usd:.4f}")
    counts = ", ".join(f"{n} {k}" for k, n in bill.backup_requests.items() if n and k.isupper())
    echo(
        f"  requests of the last backup ({counts or 'not recorded'}): "
        f"${bill.backup_requests_usd:.4f} x {bill.backups_per_month} backups"
    )
    echo(f"  total ${bill.total_usd:.4f} a month")
