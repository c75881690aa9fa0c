"""`bbackup restore SNAPSHOT --target DIR`: restore a snapshot, or the part of it the
patterns select, past damaged data, with --dry-run, --verify, --overwrite and --delete."""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable
from typing import Annotated

import typer

from bbackup.cli.opening import with_repo
from bbackup.cli.options import GlobalOptions, repo_command
from bbackup.cli.output import echo, emit_json, warn
from bbackup.cli.progress import progress_reporter
from bbackup.cli.snapshot_selection import HostOpt, PathOpt, TagOpt, snapshot_filter
from bbackup.cli.thawing import DaysOpt, NoWaitOpt, TierOpt, thaw_before_reading, thaw_options
from bbackup.errors import ExitCode, UsageError
from bbackup.ops.damage_record import recording_damage
from bbackup.ops.restore import Restorer
from bbackup.ops.restore_compare import Overwrite
from bbackup.ops.restore_reads import pack_read_settings
from bbackup.ops.restore_report import RestoreSummary
from bbackup.ops.restore_select import PathFilter
from bbackup.ops.thaw import packs_for_restore
from bbackup.report_format import human_bytes
from bbackup.repository import Repository
from bbackup.snapshot.store import find_snapshot, load_snapshots


def register(app: typer.Typer) -> None:
    @repo_command(app, "restore", help="Restore a snapshot into a target directory.")
    def restore(
        opts: GlobalOptions,
        snapshot: Annotated[str, typer.Argument(help="latest or a snapshot ID prefix.")],
        target: Annotated[str, typer.Option("--target", "-t", help="Directory to restore into.")],
        include: Annotated[
            list[str] | None,
            typer.Option(
                "--include", "-i", help="Only restore paths matching this pattern (repeatable)."
            ),
        ] = None,
        exclude: Annotated[
            list[str] | None,
            typer.Option(
                "--exclude", "-e", help="Do not restore paths matching this pattern (repeatable)."
            ),
        ] = None,
        overwrite: Annotated[
            Overwrite,
            typer.Option(help="What to do with entries already in the target."),
        ] = Overwrite.IF_CHANGED,
        delete: Annotated[
            bool,
            typer.Option(
                "--delete", help="Remove entries in the target that the snapshot does not have."
            ),
        ] = False,
        dry_run: Annotated[
            bool,
            typer.Option(
                "--dry-run",
                help="Say what would be written and downloaded, and what thawing archived "
                "packs would cost; write and request nothing.",
            ),
        ] = False,
        verify: Annotated[
            bool,
            typer.Option(
                "--verify", help="Read restored files back and compare with the snapshot."
            ),
        ] = False,
        host: HostOpt = None,
        tag: TagOpt = None,
        path: PathOpt = None,
        # One by default: on 2 cores a second thread made no restore faster (cold cache:
        # /usr/share 10.1-11.0 s with one against 9.9-11.2 s with two, 20,000 small files
        # 4.3-4.5 against 4.4-4.8 s, 512 MiB of large files 2.6 against 2.6-2.7 s) and cost
        # a third more CPU trading the GIL; the reads stay concurrent (--connections).
        workers: Annotated[int, typer.Option(min=1, max=64, help="Decrypt/write threads.")] = 1,
        restore_tier: TierOpt = "bulk",
        restore_days: DaysOpt = 3,
        no_wait: NoWaitOpt = False,
        numeric_owner: Annotated[
            bool,
            typer.Option(
                "--numeric-owner",
                help="Give files their recorded uid/gid, not the ones their user and group "
                "names have on this machine (as root).",
            ),
        ] = False,
    ) -> None:
        thaw = thaw_options(restore_tier, restore_days, no_wait)
        if os.path.lexists(target) and not os.path.isdir(target):
            raise UsageError(f"--target {target}: exists and is not a directory")
        # A bad pattern fails before anything opens.
        PathFilter(include or (), exclude or ())

        def on_error(p: str, message: str) -> None:
            if opts.json:
                emit_json({"event": "error", "path": p, "message": message})
            else:
                warn(f"warning: {p}: {message}")

        def on_plan(p: str, action: str) -> None:
            if opts.json:
                emit_json({"event": "planned", "path": p, "action": action})
            elif action != "unchanged":
                echo(f"would {action} {p}")

        async def work(repo: Repository) -> RestoreSummary | None:
            snap = find_snapshot(
                await load_snapshots(repo), snapshot, snapshot_filter(host, tag, path)
            )

            # Archived packs are thawed when the first read meets one; only then (or for a
            # dry run's estimate) are the trees walked for the packs the restore needs, with
            # a fresh filter: the Restorer's own counts which patterns matched.
            def packs() -> Awaitable[set[str]]:
                return packs_for_restore(repo, snap, PathFilter(include or (), exclude or ()))

            readable = await thaw_before_reading(
                repo, packs, thaw, as_json=opts.json, dry_run=dry_run
            )
            if not readable and not dry_run:
                return None
            reads = pack_read_settings(repo, opts.connections)
            restorer = Restorer(
                repo,
                snap,
                target,
                include=include,
                exclude=exclude,
                overwrite=overwrite,
                dry_run=dry_run,
                delete=delete,
                verify=verify,
                workers=workers,
                connections=reads.connections,
                read_size=reads.read_size,
                max_gap=reads.max_gap,
                on_error=on_error,
                on_warning=lambda p, message: warn(f"warning: {p}: {message}"),
                on_plan=on_plan,
                numeric_owner=numeric_owner,
                worker_keys=repo.master,
            )
            start = time.monotonic()

            def sample() -> dict[str, object]:
                p = restorer.progress
                values: dict[str, object] = {
                    "files": p.files,
                    "bytes": p.bytes_written,
                    "seconds": time.monotonic() - start,
                }
                if p.planned:  # a total still growing while planning would mislead
                    values["bytes_total"] = p.bytes_total
                    values["files_total"] = restorer.summary.files
                return values

            # A blob that fails verification is recorded, so backups upload it again.
            async with (
                recording_damage(repo, "restore", warn),
                progress_reporter(sample, as_json=opts.json, label="restore"),
            ):
                summary = await restorer.run()
            summary.requests = repo.stack.counter.snapshot()
            return summary

        summary = with_repo(opts, work)
        if summary is None:
            return
        if opts.json:
            emit_json({"event": "summary", **summary.to_dict()})
        else:
            report(summary)
        if summary.integrity_failed:
            raise typer.Exit(ExitCode.INTEGRITY)
        if summary.errors:
            raise typer.Exit(ExitCode.ERROR)


def report(summary: RestoreSummary) -> None:
    """The human summary: damage and verify failures on stderr, one result line."""
    for tree in summary.damaged_trees:
        warn(
            f"damaged: {tree['path']}: its listing cannot be read ({tree['message']}); "
            "nothing below it was restored"
        )
    for file in summary.damaged:
        lost = file["blobs"]
        named = [f"{b['id'][:16]} ({b['pack'] or 'index'}: {b['problem']})" for b in lost[:3]]
        more = f" and {len(lost) - 3} more" if len(lost) > 3 else ""
        warn(
            f"damaged: {file['path']}: lost {len(lost)} blob(s): {', '.join(named)}{more}; "
            f"kept as {file['kept_as']}"
        )
    for failure in summary.verify_failures:
        warn(f"verify failed: {failure['path']}: {failure['message']}")
    others = [
        f"{summary.unchanged} unchanged" if summary.unchanged else "",
        f"{summary.kept} kept" if summary.kept else "",
        f"{summary.deleted} {'to delete' if summary.dry_run else 'deleted'}"
        if summary.deleted
        else "",
        f"{len(summary.damaged)} damaged" if summary.damaged else "",
    ]
    extra = "".join(f", {part}" for part in others if part)
    if summary.dry_run:
        echo(
            f"dry run of snapshot {summary.snapshot_id[:8]}: would write {summary.files} files "
            f"({human_bytes(summary.bytes)}), {summary.dirs} directories{extra}; would download "
            f"{human_bytes(summary.bytes_to_download)}; nothing was changed"
        )
        return
    echo(
        f"restored snapshot {summary.snapshot_id[:8]}: {summary.files} files, "
        f"{summary.dirs} directories, {human_bytes(summary.bytes)}{extra} "
        f"in {summary.duration_seconds:.1f}s"
    )
    if summary.verified_files or summary.verify_failures:
        echo(
            f"verified {summary.verified_files} files ({human_bytes(summary.verified_bytes)})"
            + (f", {len(summary.verify_failures)} differ" if summary.verify_failures else "")
        )
