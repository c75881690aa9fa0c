"""`bbackup check`: verify the repository's structure and, optionally, its data."""

from __future__ import annotations

import contextlib
import tempfile
import time
from typing import Annotated, Any

import typer

from bbackup.cli.opening import with_repo
from bbackup.cli.options import GlobalOptions, repo_command
from bbackup.cli.output import echo, emit_json, warn
from bbackup.cli.progress import progress_reporter
from bbackup.cli.thawing import DaysOpt, NoWaitOpt, TierOpt, thaw_before_reading, thaw_options
from bbackup.errors import ExitCode
from bbackup.ops.check import check_repository
from bbackup.ops.check_read_data import ReadDataSubset
from bbackup.report_format import human_bytes
from bbackup.repository import Repository


def register(app: typer.Typer) -> None:
    @repo_command(app, "check", help="Verify the repository's structure and, optionally, its data.")
    def check(
        opts: GlobalOptions,
        read_data: Annotated[
            bool, typer.Option("--read-data", help="Download and verify every pack.")
        ] = False,
        read_data_subset: Annotated[
            str | None, typer.Option(help="Verify a subset: 10% or n/m.")
        ] = None,
        restore_tier: TierOpt = "bulk",
        restore_days: DaysOpt = 3,
        no_wait: NoWaitOpt = False,
    ) -> None:
        thaw = thaw_options(restore_tier, restore_days, no_wait)
        subset = (
            ReadDataSubset.parse(read_data_subset)
            if read_data_subset
            else (ReadDataSubset() if read_data else None)
        )

        async def work(repo: Repository) -> Any:
            packs = repo.index.all_packs()
            read = {"packs": 0, "bytes": 0}
            start = time.monotonic()

            def on_progress(name: str) -> None:
                read["packs"] += 1
                read["bytes"] += packs[name.rsplit("/", 1)[-1]].size

            # A subset is drawn at random, but its size is known beforehand.
            total = len(subset.select(list(packs))) if subset else 0

            def sample() -> dict[str, object]:
                return {**read, "packs_total": total, "seconds": time.monotonic() - start}

            # Progress is that of --read-data: the structure check alone is quick.
            async with (
                progress_reporter(sample, as_json=opts.json, label="check")
                if subset
                else contextlib.nullcontext()
            ):
                report = await check_repository(
                    repo,
                    read_data=subset,
                    connections=opts.connections,
                    on_progress=on_progress if subset else None,
                    before_reads=lambda names: thaw_before_reading(
                        repo, names, thaw, as_json=opts.json
                    ),
                )
            report.requests = repo.stack.counter.snapshot()
            return report

        # check verifies what the repository holds, never the local cache's copies: like
        # restic's, it uses a fresh cache of its own, so each tree pack is fetched once.
        with tempfile.TemporaryDirectory(prefix="bbackup-check-") as scratch:
            opts.no_cache, opts.cache_dir = False, scratch
            report = with_repo(opts, work)
        if opts.json:
            emit_json({"event": "check", **report.to_dict()})
        else:
            for w in report.warnings:
                warn(f"warning: {w}")
            for e in report.errors:
                warn(f"error: {e}")
            echo(
                f"checked {report.snapshots} snapshots, {report.trees} trees, {report.packs} packs"
                + (
                    f", read {report.packs_read} packs ({human_bytes(report.bytes_read)})"
                    if subset
                    else ""
                )
            )
            if report.damage_record:
                echo(
                    f"recorded the damaged packs in {report.damage_record}: backups on every "
                    "host upload their damaged blobs again until `bbackup repair packs` runs"
                )
            echo("no errors were found" if report.ok else f"{len(report.errors)} errors found")
        if not report.ok:
            raise typer.Exit(ExitCode.INTEGRITY)
