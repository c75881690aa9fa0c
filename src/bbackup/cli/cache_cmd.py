"""`bbackup cache [--cleanup]`: the local caches on this machine, and removing old ones.
It opens no repository: it needs no password."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from bbackup.cache_paths import cache_directory
from bbackup.cli.output import echo, emit_json, error_exit
from bbackup.ops.local_cache import (
    DEFAULT_MAX_AGE_DAYS,
    CacheDirectory,
    list_caches,
    remove_old_caches,
)
from bbackup.report_format import human_bytes


def _describe(cache: CacheDirectory, now: float) -> dict[str, object]:
    return {
        "repository_id": cache.repository_id,
        "path": str(cache.path),
        "size": cache.size,
        "last_used": datetime.fromtimestamp(cache.last_used, UTC).isoformat(),
        "age_days": round(cache.age_days(now), 1),
    }


def register(app: typer.Typer) -> None:
    @app.command(
        "cache",
        short_help="Show or clean up the local caches.",
        help="Show the local caches (one per repository) with their sizes and last use; "
        f"--cleanup removes those not used for --max-age days ({DEFAULT_MAX_AGE_DAYS}). "
        "A removed cache is fetched again when needed: no data is lost.\n\n"
        "Example: bbackup cache --cleanup --max-age 60",
    )
    def cache(
        cleanup: Annotated[
            bool, typer.Option("--cleanup", help="Remove caches not used for --max-age days.")
        ] = False,
        max_age: Annotated[
            int,
            typer.Option(metavar="DAYS", min=0, help="With --cleanup: the age limit in days."),
        ] = DEFAULT_MAX_AGE_DAYS,
        cache_dir: Annotated[
            str | None,
            typer.Option(metavar="DIR", envvar="BBACKUP_CACHE_DIR", help="Local cache directory."),
        ] = None,
        json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    ) -> None:
        with error_exit(json):
            root = Path(cache_directory(cache_dir))
            now = time.time()
            if cleanup:
                removed = remove_old_caches(root, max_age, now=now)
                kept = list_caches(root)
                if json:
                    emit_json(
                        {
                            "event": "cache_cleanup",
                            "root": str(root),
                            "max_age_days": max_age,
                            "removed": [_describe(c, now) for c in removed],
                            "kept": [_describe(c, now) for c in kept],
                        }
                    )
                    return
                for c in removed:
                    echo(
                        f"removed {c.path} ({human_bytes(c.size)}, "
                        f"last used {c.age_days(now):.0f} days ago)"
                    )
                echo(
                    f"removed {len(removed)} caches not used for {max_age} days, "
                    f"freed {human_bytes(sum(c.size for c in removed))}; {len(kept)} kept"
                )
                return
            caches = list_caches(root)
            if json:
                emit_json(
                    {
                        "event": "caches",
                        "root": str(root),
                        "caches": [_describe(c, now) for c in caches],
                    }
                )
                return
            echo(f"cache directory {root}")
            echo(f"{'Repository ID':<16} {'Size':>12} {'Last used':<20} Age")
            for c in caches:
                used = time.strftime("%Y-%m-%d %H:%M", time.localtime(c.last_used))
                echo(
                    f"{c.repository_id[:16]:<16} {human_bytes(c.size):>12} {used:<20} "
                    f"{c.age_days(now):.0f}d"
                )
            echo(f"{len(caches)} caches, {human_bytes(sum(c.size for c in caches))}")
