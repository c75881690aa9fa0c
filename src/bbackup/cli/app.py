"""The typer application: registers the command groups and runs them.

`main` registers only the module of the command being run, so `bbackup backup` does not
import what `prune`, `check` or `restore` need (start-up time counts: an unchanged backup
takes half a second). `bbackup`, `bbackup --help` and `--version` load no command module
at all: the command list comes from `COMMAND_SUMMARIES` (`CommandIndex`), ~0.1 s instead
of ~0.5 s of CPU. Anything else that names no command (a typo, the completion script)
registers every module, and `app`, for tests and embedding, has them all.
"""

from __future__ import annotations

import importlib
import os
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

#: What `bbackup --help` lists for each command: its short help, or the first sentence of
#: its help (what the listing shows of it), so that the listing needs no command module.
#: tests/integration/test_help_index.py checks that it says what the commands say.
COMMAND_SUMMARIES = {
    "init": "Create a new repository.",
    "snapshots": "List snapshots, oldest first.",
    "ls": "List files in a snapshot.",
    "diff": "Show what changed between two snapshots.",
    "find": "Find which snapshots hold paths matching a pattern.",
    "check": "Verify the repository's structure and, optionally, its data.",
    "unlock": "Remove stale locks (or all with --remove-all).",
    "backup": "Back up files and directories.",
    "restore": "Restore a snapshot into a target directory.",
    "dump": "Write a file of a snapshot to stdout, or a directory as a tar (or zip) stream.",
    "mount": "Browse every snapshot as a read-only filesystem at MOUNTPOINT (an empty "
    "directory): snapshots/TIME, hosts/HOST/TIME, tags/TAG/TIME, ids/ID, and a `latest` "
    "link in each.",
    "prune": "Delete unused data and repack mostly-unused packs.",
    "forget": "Remove snapshots according to a retention policy.",
    "copy": "Copy snapshots from another repository (--from-repo) into this one.",
    "stats": "Show sizes, ratios and storage classes of snapshots.",
    "drill": "Prove that a sample of a snapshot restores, and record it.",
    "run": "Run a job of the config file now.",
    "service": "Run every job on its schedule (SIGHUP reloads the config).",
    "status": "Show each job's last and next run, and overdue jobs.",
    "tag": "Add, remove or set the tags of snapshots.",
    "rewrite": "Remove files from existing snapshots.",
    "cat": "Print a repository object decrypted, as JSON.",
    "list": "Print the IDs of every object of a kind, one per line.",
    "cache": "Show or clean up the local caches.",
    "completion": "Print the shell completion script for bash, zsh or fish.",
    "key": "Manage repository keys (passwords).",
    "repair": "Repair a damaged repository.",
    "lifecycle": "Manage the bucket's lifecycle rules (tiering of data/, clean-up).",
    "schedule": "Schedule jobs with systemd timers or cron instead of `bbackup service`.",
    "config": "Check the job configuration file.",
    "locks": "Object lock retention of the repository's objects.",
}
#: The commands whose summary is a short help of their own, shown whole at any width
#: (the others are cut to the terminal's width, as click cuts a help's first sentence).
_OWN_SHORT_HELP = frozenset({"diff", "find", "tag", "rewrite", "cat", "list", "cache"})
#: The first words of a command line answered by `CommandIndex` alone.
_INDEX_ONLY = frozenset({"--help", "-h", "--version"})


class CommandIndex(RootCommandGroup):
    """The root group with no command loaded, for `bbackup --help` and `--version`: it
    lists every command from `COMMAND_SUMMARIES`, by stand-ins that carry only a name and
    a summary (they cannot run)."""

    def list_commands(self, ctx: Any) -> list[str]:
        return list(COMMAND_SUMMARIES)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        summary = COMMAND_SUMMARIES.get(cmd_name)
        if summary is None:
            return None
        if cmd_name in _OWN_SHORT_HELP:
            return typer.core.TyperCommand(cmd_name, short_help=summary)
        return typer.core.TyperCommand(cmd_name, help=summary)


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


def build_app(command: str | None = None, *, index_only: bool = False) -> typer.Typer:
    """The application with `command`'s module registered, or every module; with
    `index_only`, none (`CommandIndex`: enough for the root --help and --version)."""
    application = typer.Typer(
        name="bbackup",
        help="B-Backup Pro: encrypted, deduplicated off-site backups.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
        cls=CommandIndex if index_only else RootCommandGroup,
        add_completion=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    application.callback()(_root)
    if index_only:
        return application
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
    if command is None:  # bare `bbackup`, or the completion script asking (no arguments)
        from bbackup.cli.completion_cmd import COMPLETE_VARIABLE, prepare_completion

        prepare_completion()
        index_only = not os.environ.get(COMPLETE_VARIABLE)
    else:
        index_only = command in _INDEX_ONLY
    build_app(command, index_only=index_only)(prog_name="bbackup")


if __name__ == "__main__":  # pragma: no cover
    main()
