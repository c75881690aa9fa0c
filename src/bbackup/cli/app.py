"""The typer application: registers every command group and runs it."""

from __future__ import annotations

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


def main() -> None:
    app(prog_name="bbackup")


if __name__ == "__main__":  # pragma: no cover
    main()
