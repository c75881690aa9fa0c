"""The options every repository command shares (flags and environment variables),
`repo_command`, which registers a command with them and with the one error → exit code
mapping, and `RootCommandGroup`: typed placeholders and examples in --help, and the quiet
end of a command whose reader closed stdout."""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from bbackup.cli.command_examples import examples_epilog
from bbackup.cli.output import EXIT_PIPE_CLOSED, drop_stdout, error_exit, quiet_output
from bbackup.errors import UsageError
from bbackup.storage import StorageOptions


@dataclass(slots=True)
class GlobalOptions:
    """Options every repository command accepts (flags or environment variables)."""

    repo: str | None
    password_file: str | None
    password_command: str | None
    s3_endpoint: str | None
    s3_region: str | None
    s3_path_style: bool | None
    connections: int | None
    no_cache: bool
    cache_dir: str | None
    json: bool
    #: --quiet: errors and warnings only (on stderr); no progress, no report on stdout.
    quiet: bool = False
    #: Where the password comes from besides the options (`copy` opens its source so).
    password_variable: str = "BBACKUP_PASSWORD"
    password_prompt: str = "Password"

    def storage_options(self) -> StorageOptions:
        if self.s3_endpoint is not None:
            check_endpoint_url(self.s3_endpoint, "--s3-endpoint")
        return StorageOptions(
            connections=self.connections,
            s3_endpoint=self.s3_endpoint,
            s3_region=self.s3_region,
            s3_path_style=self.s3_path_style,
        )


def check_endpoint_url(url: str, flag: str) -> str:
    """`url` if it is an http(s) URL with a host, else a UsageError naming `flag`."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (a port that is not a number raises here)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"{flag} {url!r}: not an endpoint URL; use e.g. https://s3.example.com")
    return url


_COMMON_PARAMS: list[tuple[str, Any, Any]] = [
    (
        "repo",
        Annotated[
            str | None,
            typer.Option(
                "--repo", "-r", envvar="BBACKUP_REPOSITORY", help="Repository URL or path."
            ),
        ],
        None,
    ),
    (
        "password_file",
        Annotated[
            str | None,
            typer.Option(envvar="BBACKUP_PASSWORD_FILE", help="Read the password from a file."),
        ],
        None,
    ),
    (
        "password_command",
        Annotated[
            str | None,
            typer.Option(
                envvar="BBACKUP_PASSWORD_COMMAND", help="Run a command that prints the password."
            ),
        ],
        None,
    ),
    (
        "s3_endpoint",
        Annotated[
            str | None,
            typer.Option(
                envvar="BBACKUP_S3_ENDPOINT", help="S3 endpoint URL (else AWS_ENDPOINT_URL)."
            ),
        ],
        None,
    ),
    (
        "s3_region",
        Annotated[str | None, typer.Option(envvar="BBACKUP_S3_REGION", help="S3 region.")],
        None,
    ),
    (
        "s3_path_style",
        Annotated[
            bool | None,
            typer.Option(
                "--s3-path-style/--s3-virtual-host",
                help="S3 addressing style (default: path style for custom endpoints).",
            ),
        ],
        None,
    ),
    (
        "connections",
        Annotated[
            int | None,
            typer.Option(min=1, max=256, help="Concurrent storage requests (S3 16, local 4)."),
        ],
        None,
    ),
    (
        "no_cache",
        Annotated[bool, typer.Option("--no-cache", help="Do not use the local cache.")],
        False,
    ),
    (
        "cache_dir",
        Annotated[
            str | None, typer.Option(envvar="BBACKUP_CACHE_DIR", help="Local cache directory.")
        ],
        None,
    ),
    (
        "json",
        Annotated[
            bool,
            typer.Option(
                "--json", help="Machine-readable output: JSON lines (docs/json.md), progress too."
            ),
        ],
        False,
    ),
    (
        "quiet",
        Annotated[
            bool,
            typer.Option("--quiet", "-q", help="Errors and warnings only: no progress, no report."),
        ],
        False,
    ),
]


def repo_command(
    app: typer.Typer, name: str, **kwargs: Any
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Register `fn(opts: GlobalOptions, ...)` as a command taking the common options too,
    with bbackup errors turned into one-line messages and their exit codes."""

    def register(fn: Callable[..., None]) -> Callable[..., None]:
        own = list(inspect.signature(fn).parameters.values())[1:]
        hints = typing_hints(fn)
        common_names = [n for n, _, _ in _COMMON_PARAMS]

        @functools.wraps(fn)
        def command(**values: Any) -> None:
            opts = GlobalOptions(**{n: values.pop(n) for n in common_names})
            with error_exit(opts.json), quiet_output(opts.quiet):
                fn(opts, **values)

        params = [p.replace(annotation=hints[p.name]) for p in own] + [
            inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=d, annotation=a)
            for n, a, d in _COMMON_PARAMS
        ]
        command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        del command.__wrapped__
        app.command(name, **kwargs)(command)
        return fn

    return register


def typing_hints(fn: Callable[..., Any]) -> dict[str, Any]:
    return typing.get_type_hints(fn, include_extras=True)


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
    return name.upper().replace("_", "-")


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
