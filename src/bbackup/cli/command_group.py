"""The root command group of the bbackup application (`RootCommandGroup`): typed
placeholders and examples in every command's --help, set in one place rather than in every
command module, and the quiet end of any command whose reader closed stdout."""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperGroup

from bbackup.cli.command_examples import examples_epilog
from bbackup.cli.output import EXIT_PIPE_CLOSED, drop_stdout

#: The placeholder an option or argument shows in --help, by parameter name, where the
#: command does not set its own metavar: what kind of value it takes, never `<str>`.
PLACEHOLDERS = {
    "repo": "URL",
    "from_repo": "URL",
    "s3_endpoint": "URL",
    "from_s3_endpoint": "URL",
    "s3_region": "REGION",
    "from_s3_region": "REGION",
    "password_file": "FILE",
    "from_password_file": "FILE",
    "password_command": "COMMAND",
    "from_password_command": "COMMAND",
    "cache_dir": "DIR",
    "target": "DIR",
    "config": "FILE",
    "host": "HOST",
    "tag": "TAG",
    "keep_tag": "TAG",
    "path": "PATH",
    "paths": "PATH...",
    "snapshot_path": "PATH",
    "snapshot": "SNAPSHOT",
    "snapshots": "SNAPSHOT...",
    "include": "PATTERN",
    "exclude": "PATTERN",
    "job": "JOB",
    "grace": "DURATION",
    "keep_within": "DURATION",
    "max_unused": "LIMIT",
    "read_data_subset": "N%|N/M",
    "group_by": "host,paths,tags",
    # An option that takes one of a few words but is typed str: its words, as a choice's.
    "archive": "[tar|zip]",
    "out": "FILE",
    "compression": "LEVEL",
    "s3_provider": "PROVIDER",
    "pack": "PACK-ID",
}


def placeholder(name: str, type_name: str) -> str:
    """The --help placeholder of a parameter without a metavar of its own."""
    if name in PLACEHOLDERS:
        return PLACEHOLDERS[name]
    if name.startswith("keep_within"):
        return "DURATION"
    if name.endswith("_file"):
        return "FILE"
    if name.endswith("_dir"):
        return "DIR"
    if name.startswith("keep_") or type_name in ("int", "int range"):
        return "N"
    if type_name in ("float", "float range"):
        return "NUMBER"
    return name.strip("_").upper().replace("_", "-")


class RootCommandGroup(TyperGroup):
    """The root command group. It gives every option and argument of every command a typed
    placeholder (`PATH`, `SNAPSHOT`, `DURATION`, `N`) instead of typer's `<str>`, lists a
    choice's values and adds each command's examples (`command_examples`), in one place
    rather than in every command module; and it ends any command whose reader closed
    stdout (`bbackup ls latest | head -1`) quietly with status 141."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            drop_stdout()
            raise typer.Exit(EXIT_PIPE_CLOSED) from None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        pending: list[Any] = list(self.commands.values())
        while pending:
            command = pending.pop()
            pending.extend(getattr(command, "commands", {}).values())
            if not getattr(command, "commands", None) and not command.epilog:
                command.epilog = examples_epilog(command_path(self, command))
            for param in command.params:
                if param.metavar is not None or getattr(param, "is_flag", False):
                    continue
                choices = getattr(param.type, "choices", None)
                if choices is not None:
                    listed = "|".join(map(str, choices))
                    # An option's values in brackets, as click shows them; an argument's
                    # bare (typer brackets it in the usage line).
                    is_option = param.param_type_name == "option"
                    param.metavar = f"[{listed}]" if is_option else listed
                else:
                    param.metavar = placeholder(param.name or "", param.type.name)
                if param.param_type_name == "argument" and param.nargs != 1:
                    param.metavar = param.metavar.removesuffix("...") + "..."


def command_path(root: Any, command: Any) -> str:
    """`command`'s name below `root` with its group's (`"key add"`)."""
    for name, sub in root.commands.items():
        if sub is command:
            return str(name)
        if command in getattr(sub, "commands", {}).values():
            return f"{name} {command.name}"
    return str(command.name)
