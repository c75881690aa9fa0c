"""What every command shares: repository options, the password resolver, opening the
repository, output helpers, and the one place that maps errors to exit codes."""

from __future__ import annotations

import asyncio
import functools
import getpass
import inspect
import json
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from bbackup.cli.early import read_password_file, unlock_hint
from bbackup.errors import BbackupError, ExitCode, NoPasswordSource, UsageError
from bbackup.repository import Repository, open_repository
from bbackup.repository.cache import default_cache_root
from bbackup.storage import StorageOptions, StorageStack, open_storage

T = TypeVar("T")


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

    def storage_options(self) -> StorageOptions:
        return StorageOptions(
            connections=self.connections,
            s3_endpoint=self.s3_endpoint,
            s3_region=self.s3_region,
            s3_path_style=self.s3_path_style,
        )

    def open_stack(self) -> StorageStack:
        if not self.repo:
            raise UsageError("no repository given: pass --repo or set BBACKUP_REPOSITORY")
        return open_storage(self.repo, self.storage_options())


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
    ("json", Annotated[bool, typer.Option("--json", help="Machine-readable output.")], False),
]


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """The only asyncio.run in bbackup."""
    return asyncio.run(coro)


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
            with error_exit(opts.json):
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
    import typing

    return typing.get_type_hints(fn, include_extras=True)


class error_exit:
    """Maps exceptions to a one-line message on stderr and the documented exit code."""

    def __init__(self, as_json: bool = False) -> None:
        self.as_json = as_json

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> bool:
        if exc is None or isinstance(exc, (typer.Exit, typer.Abort, SystemExit)):
            return False
        if isinstance(exc, KeyboardInterrupt):
            fail("interrupted", ExitCode.INTERRUPTED, self.as_json)
        if isinstance(exc, BbackupError):
            fail(exc.message, exc.exit_code, self.as_json)
        if isinstance(exc, OSError):
            fail(
                f"{exc.strerror or exc}{': ' + str(exc.filename) if exc.filename else ''}",
                1,
                self.as_json,
            )
        if os.environ.get("BBACKUP_DEBUG"):
            return False
        fail(
            f"internal error: {type(exc).__name__}: {exc} (set BBACKUP_DEBUG=1 for a traceback)",
            1,
            self.as_json,
        )
        return True  # pragma: no cover


def fail(message: str, code: int, as_json: bool = False) -> None:
    message = " ".join(str(message).split())
    if as_json:
        print(
            json.dumps({"event": "error", "message": message, "exit_code": code}), file=sys.stderr
        )
    else:
        print(f"bbackup: error: {message}", file=sys.stderr)
    raise typer.Exit(code)


def emit_json(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, default=str) + "\n")
    sys.stdout.flush()


def echo(text: str) -> None:
    sys.stdout.write(text + "\n")


def warn(text: str) -> None:
    sys.stderr.write(text + "\n")


def warn_event(text: str, as_json: bool) -> None:
    """A warning on stderr: one line, or one JSON event with --json."""
    if as_json:
        text = json.dumps({"event": "warning", "message": text.removeprefix("warning: ")})
    warn(text)


# ---- passwords ---------------------------------------------------------------------------


def resolve_password(
    opts: GlobalOptions, *, confirm: bool = False, prompt: str = "Password"
) -> str:
    """The one password resolver: env, file, command, then a TTY prompt; never hangs."""
    if (value := os.environ.get("BBACKUP_PASSWORD")) is not None:
        return value
    if opts.password_file:
        try:
            return read_password_file(opts.password_file)
        except OSError as exc:
            raise UsageError(
                f"cannot read password file {opts.password_file}: {exc.strerror}"
            ) from exc
    if opts.password_command:
        try:
            out = subprocess.run(
                opts.password_command,
                shell=True,
                check=True,
                capture_output=True,
                text=True,
                timeout=60,
            )
        except (subprocess.SubprocessError, OSError) as exc:
            raise UsageError(f"password command failed: {exc}") from exc
        return out.stdout.rstrip("\r\n")
    return prompt_password(prompt, confirm=confirm)


def prompt_password(prompt: str, *, confirm: bool) -> str:
    if not sys.stdin.isatty():
        raise NoPasswordSource()
    first = getpass.getpass(f"{prompt}: ")
    if confirm:
        if getpass.getpass(f"{prompt} again: ") != first:
            raise UsageError("passwords do not match")
        if not first:
            raise UsageError("an empty password is not allowed")
    return first


async def open_repo(
    opts: GlobalOptions, stack: StorageStack, *, load_index: bool = True
) -> Repository:
    password = resolve_password(opts)
    return await open_repository(
        stack,
        password,
        use_cache=not opts.no_cache,
        cache_root=Path(opts.cache_dir) if opts.cache_dir else None,
        load_index=load_index,
        remember_key=key_hint(opts, stack),
        on_damage=lambda line: warn_event(f"warning: {line}", opts.json),
        on_damaged_key=lambda message: warn(f"warning: {message}"),
    )


def key_hint(opts: GlobalOptions, stack: StorageStack) -> Path | None:
    """Where the cache keeps a copy of the key file that opens a remote repository, from
    which the next command starts deriving the key while it loads (cli/early.py); None
    for a local repository (its key files are read directly) or without the cache."""
    if opts.no_cache or not opts.repo or stack.url.scheme == "local":
        return None
    root = Path(opts.cache_dir) if opts.cache_dir else default_cache_root()
    return Path(unlock_hint(root, opts.repo))


def with_repo(
    opts: GlobalOptions, work: Callable[[Repository], Awaitable[T]], *, load_index: bool = True
) -> T:
    """Open the repository, run `work`, and close the storage whatever happens."""
    stack = opts.open_stack()

    async def main() -> T:
        try:
            repo = await open_repo(opts, stack, load_index=load_index)
            return await work(repo)
        finally:
            await stack.storage.aclose()

    return run_async(main())


#: glibc's mallopt parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3


def set_malloc_option(option: int, value: int, env_name: str) -> None:
    """glibc's mallopt(option, value), unless the user set `env_name` (its MALLOC_*_
    variable) in the environment; nothing where the C library has no mallopt."""
    if env_name in os.environ:
        return
    import ctypes

    try:  # the process's own symbols: libc is linked in (find_library would run ldconfig)
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(option, value)


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} TiB"  # pragma: no cover
