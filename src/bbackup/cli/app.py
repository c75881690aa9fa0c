"""The typer application: registers every command group and runs it."""

from __future__ import annotations

import os

import typer

from bbackup import __version__
from bbackup.cli import backup_cmd, key_cmds, repo_cmds, restore_cmd, retention_cmds

app = typer.Typer(
    name="bbackup",
    help="B-Backup Pro: encrypted, deduplicated off-site backups.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        print(f"bbackup {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version."
    ),
) -> None:
    """B-Backup Pro: encrypted, deduplicated off-site backups."""


repo_cmds.register(app)
backup_cmd.register(app)
restore_cmd.register(app)
key_cmds.register(app)
retention_cmds.register(app)


def _tune_allocator() -> None:
    """Serve buffers of 2 MiB and more (packs, ranged reads) with mmap, freed at once.

    glibc raises its mmap threshold after the first large free, up to 32 MiB; from then
    on every 16 MiB pack buffer is carved from per-thread heaps that fragment as buffers
    move between reader, packer and upload threads (measured: restore peak RSS 196 → 128
    MiB). A fixed threshold stops that. Elsewhere than glibc this does nothing.
    """
    if "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return
    import ctypes

    try:  # the process's own symbols: libc is linked in (find_library would run ldconfig)
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    m_mmap_threshold = -3
    mallopt(m_mmap_threshold, 2 * 1024 * 1024)


def main() -> None:
    _tune_allocator()
    app(prog_name="bbackup")


if __name__ == "__main__":  # pragma: no cover
    main()
