"""`bbackup mount MOUNTPOINT`: every snapshot as a read-only FUSE filesystem, served until
Ctrl-C, SIGTERM or an unmount, under a shared repository lock.

libfuse's loop blocks the main thread and calls back from its own threads; the
repository lives on an event loop in a thread of its own (`RepositoryThread`). Ctrl-C and
SIGTERM are taken by a thread that waits for them and unmounts, so that libfuse's loop
ends cleanly and the command exits 0 with the mount gone.
"""

from __future__ import annotations

import os
import signal
import threading
from types import ModuleType
from typing import Annotated

import typer

from bbackup.cli.opening import TERMINATING_SIGNALS, RepositoryThread
from bbackup.cli.options import GlobalOptions, repo_command
from bbackup.cli.output import emit_json, warn, warn_event
from bbackup.ops.mount_content import DEFAULT_CACHE_BYTES
from bbackup.ops.mount_fs import SnapshotFilesystem
from bbackup.ops.mount_fuse import (
    check_mount_point,
    is_mounted,
    load_fuse,
    serve,
    unmount,
    unmount_tool,
)
from bbackup.repository import RepositoryLock
from bbackup.snapshot.store import load_snapshots

MiB = 1024 * 1024


def register(app: typer.Typer) -> None:
    @repo_command(
        app,
        "mount",
        help=(
            "Browse every snapshot as a read-only filesystem at MOUNTPOINT (an empty "
            "directory): snapshots/TIME, hosts/HOST/TIME, tags/TAG/TIME, ids/ID, and a "
            "`latest` link in each. Serves until Ctrl-C. Needs libfuse (apt-get install "
            "fuse3) and mfusepy (pip install 'bbackup\\[mount]')."
        ),
    )
    def mount(
        opts: GlobalOptions,
        mountpoint: Annotated[
            str, typer.Argument(metavar="MOUNTPOINT", help="An empty directory.")
        ],
        allow_other: Annotated[
            bool,
            typer.Option(
                "--allow-other",
                help="Let other users read the mount (needs user_allow_other in "
                "/etc/fuse.conf unless root), as far as the snapshot's modes and owners allow.",
            ),
        ] = False,
        cache_size: Annotated[
            int,
            typer.Option(
                "--cache-size",
                min=8,
                max=4096,
                help="MiB of decrypted file content kept in memory.",
            ),
        ] = DEFAULT_CACHE_BYTES // MiB,
    ) -> None:
        where = check_mount_point(mountpoint)
        fuse = load_fuse()
        with (
            RepositoryThread(opts) as session,
            session.hold(RepositoryLock(session.repo, exclusive=False, purpose="mount")),
        ):
            repo = session.repo
            filesystem = SnapshotFilesystem(
                repo,
                session.call,
                session.call(load_snapshots(repo)),
                on_error=lambda line: warn_event(f"warning: {line}", opts.json),
                cache_bytes=cache_size * MiB,
            )
            tool = os.path.basename(unmount_tool() or "umount")
            announce = (
                f"serving {filesystem.snapshot_count} snapshots at {mountpoint} (read-only); "
                f"quit with Ctrl-C or `{tool} -u {mountpoint}`"
            )
            if opts.json:
                emit_json(
                    {
                        "event": "mounted",
                        "mountpoint": where,
                        "snapshots": filesystem.snapshot_count,
                    }
                )
            else:
                warn(announce)
            try:
                signalled = serve_until_signal(fuse, filesystem, where, allow_other=allow_other)
            finally:
                filesystem.close()
        stats = filesystem.blobs.stats
        if opts.json:
            emit_json(
                {
                    "event": "unmounted",
                    "mountpoint": where,
                    "signal": signalled,
                    "blobs_fetched": stats.blobs,
                    "bytes_fetched": stats.bytes,
                    "cache_hits": stats.cache_hits,
                }
            )
        else:
            warn(f"unmounted {mountpoint}")


def serve_until_signal(
    fuse: ModuleType, filesystem: SnapshotFilesystem, where: str, *, allow_other: bool
) -> str | None:
    """Serve until unmounted; a terminating signal unmounts. Returns the signal's name, or
    None if something else unmounted it."""
    # Blocked here, before libfuse starts its threads, so that they inherit the mask and
    # only the waiting thread takes these signals (libfuse's own handlers never run).
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, TERMINATING_SIGNALS)
    stop = threading.Event()
    received: list[str] = []

    def wait_for_signal() -> None:
        pending = False  # a signal came before libfuse had mounted: unmount once it has
        while not stop.is_set():
            info = signal.sigtimedwait(TERMINATING_SIGNALS, 0.2)
            if info is not None:
                received.append(signal.Signals(info.si_signo).name)
                pending = True
            if pending and is_mounted(where):
                pending = False
                if unmount(where):
                    warn(f"{where} is in use: detached; it goes when the last open file closes")

    waiter = threading.Thread(target=wait_for_signal, name="bbackup-mount-signals", daemon=True)
    waiter.start()
    try:
        serve(fuse, filesystem, where, allow_other=allow_other)
    finally:
        stop.set()
        waiter.join()
        # A signal that came as the loop ended asked for what has happened: take it here,
        # or unblocking would deliver it (a KeyboardInterrupt in the middle of clean-up).
        while (info := signal.sigtimedwait(TERMINATING_SIGNALS, 0)) is not None:
            received.append(signal.Signals(info.si_signo).name)
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    return received[0] if received else None
