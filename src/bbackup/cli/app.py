"""The typer application: registers the command groups and runs them.

`main` registers only the module of the command being run, so `bbackup backup` does not
import what `prune`, `check` or `restore` need (start-up time counts: an unchanged backup
takes half a second). Without a known command (`--help`, a typo) every module is
registered, and `app`, for tests and embedding, has them all.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import typer

from bbackup import __version__
from bbackup.cli.allocator import tune_allocator
from bbackup.cli.command_group import RootCommandGroup

#: Top-level command → the module under bbackup.cli that registers it, in the order
#: `bbackup --help` lists them.
COMMAND_MODULES = {
    "init": "repo_cmds",
    "snapshots": "snapshots_cmd",
    "ls": "ls_cmd",
    "diff": "diff_cmd",
    "find": "find_cmd",
    "check": "check_cmd",
    "unlock": "repo_cmds",
    "backup": "backup_cmd",
    "restore": "restore_cmd",
    "dump": "dump_cmd",
    "mount": "mount_cmd",
    "prune": "prune_cmd",
    "forget": "forget_cmd",
    "copy": "copy_cmd",
    "stats": "stats_cmd",
    "drill": "drill_cmd",
    "run": "run_cmd",
    "service": "service_cmd",
    "status": "status_cmd",
    "tag": "tag_cmd",
    "rewrite": "rewrite_cmd",
    "cat": "inspect_cmds",
    "list": "inspect_cmds",
    "cache": "cache_cmd",
    "completion": "completion_cmd",
    "key": "key_cmds",
    "repair": "repair_cmds",
    "lifecycle": "lifecycle_cmd",
    "schedule": "schedule_cmd",
    "config": "config_cmd",
    "locks": "locks_cmd",
}
_ALL_MODULES = tuple(dict.fromkeys(COMMAND_MODULES.values()))


def _version(value: bool) -> None:
    if value:
        print(f"bbackup {__version__}")
        raise typer.Exit()


def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version."
    ),
) -> None:
    """B-Backup Pro: encrypted, deduplicated off-site backups."""


def build_app(command: str | None = None) -> typer.Typer:
    """The application with `command`'s module registered, or every module."""
    application = typer.Typer(
        name="bbackup",
        help="B-Backup Pro: encrypted, deduplicated off-site backups.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
        cls=RootCommandGroup,
        add_completion=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    application.callback()(_root)
    module = COMMAND_MODULES.get(command or "")
    for name in (module,) if module else _ALL_MODULES:
        importlib.import_module(f"bbackup.cli.{name}").register(application)
    order = list(COMMAND_MODULES)
    application.registered_commands.sort(key=lambda c: order.index(c.name or ""))
    return application


def __getattr__(name: str) -> Any:
    if name == "app":
        application = globals()["app"] = build_app()
        return application
    raise AttributeError(name)


def main() -> None:
    command = sys.argv[1] if len(sys.argv) > 1 else None
    tune_allocator(command)
    if command is None:  # --help, or the completion script asking (it passes no arguments)
        from bbackup.cli.completion_cmd import prepare_completion

        prepare_completion()
    build_app(command)(prog_name="bbackup")


if __name__ == "__main__":  # pragma: no cover
    main()
