"""The repository another one is made from or copied from (`copy`, `init
--copy-chunker-params`): `--from-repo` and the `--from-*` options and BBACKUP_FROM_*
variables that open it, mirroring the target's `--repo`, password and `--s3-*` options."""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import typer

from bbackup.chunking import ChunkerParams
from bbackup.cli.opening import open_repo, open_stack, run_async
from bbackup.cli.options import GlobalOptions, typing_hints
from bbackup.crypto.keys import MasterKey
from bbackup.errors import NoPasswordSource, UsageError
from bbackup.repository import Repository
from bbackup.storage import StorageStack

FromRepoOpt = Annotated[
    str | None,
    typer.Option("--from-repo", envvar="BBACKUP_FROM_REPOSITORY", help="Repository to copy from."),
]
FromPasswordFileOpt = Annotated[
    str | None,
    typer.Option(
        envvar="BBACKUP_FROM_PASSWORD_FILE",
        help="Read the source's password from a file (else BBACKUP_FROM_PASSWORD).",
    ),
]
FromPasswordCommandOpt = Annotated[
    str | None,
    typer.Option(
        envvar="BBACKUP_FROM_PASSWORD_COMMAND",
        help="Run a command that prints the source's password.",
    ),
]
FromS3EndpointOpt = Annotated[
    str | None,
    typer.Option(
        envvar="BBACKUP_FROM_S3_ENDPOINT",
        help="The source's S3 endpoint URL (else the target's, as --s3-endpoint).",
    ),
]
FromS3RegionOpt = Annotated[
    str | None, typer.Option(envvar="BBACKUP_FROM_S3_REGION", help="The source's S3 region.")
]
FromS3PathStyleOpt = Annotated[
    bool | None,
    typer.Option(
        "--from-s3-path-style/--from-s3-virtual-host",
        help="The source's S3 addressing style (as --s3-path-style).",
    ),
]


#: The `--from-*` options, each (parameter, annotation): what `source_repo_options` puts
#: in place of a command's `source` parameter, in SourceRepoOptions' order.
_FROM_PARAMS: list[tuple[str, Any]] = [
    ("from_repo", FromRepoOpt),
    ("from_password_file", FromPasswordFileOpt),
    ("from_password_command", FromPasswordCommandOpt),
    ("from_s3_endpoint", FromS3EndpointOpt),
    ("from_s3_region", FromS3RegionOpt),
    ("from_s3_path_style", FromS3PathStyleOpt),
]


@dataclass(frozen=True, slots=True)
class SourceRepoOptions:
    """The `--from-*` options as given, before they are checked."""

    repo: str | None = None
    password_file: str | None = None
    password_command: str | None = None
    s3_endpoint: str | None = None
    s3_region: str | None = None
    s3_path_style: bool | None = None

    def global_options(self, opts: GlobalOptions) -> GlobalOptions:
        """The options that open the source: the `--from-*` ones in place of the target's;
        connections, cache and output as for the target."""
        if not self.repo:
            raise UsageError(
                "no source repository given: pass --from-repo or set BBACKUP_FROM_REPOSITORY"
            )
        return dataclasses.replace(
            opts,
            repo=self.repo,
            password_file=self.password_file,
            password_command=self.password_command,
            s3_endpoint=self.s3_endpoint,
            s3_region=self.s3_region,
            s3_path_style=self.s3_path_style,
            password_variable="BBACKUP_FROM_PASSWORD",
            password_prompt="Password of the source repository",
            flag_prefix="--from-",
        )


#: The default of a command's `source` parameter (the decorator always passes one).
NO_SOURCE_OPTIONS = SourceRepoOptions()


def source_repo_options(fn: Callable[..., None]) -> Callable[..., None]:
    """Let a command (under `repo_command`) take `source: SourceRepoOptions`: the command
    line gets the six `--from-*` options in its place, in the same spot of `--help`."""
    hints = typing_hints(fn)
    params: list[inspect.Parameter] = []
    for param in inspect.signature(fn).parameters.values():
        if param.name != "source":
            params.append(param.replace(annotation=hints[param.name]))
            continue
        params += [
            inspect.Parameter(name, param.kind, default=None, annotation=annotation)
            for name, annotation in _FROM_PARAMS
        ]
    from_names = [name for name, _ in _FROM_PARAMS]

    @functools.wraps(fn)
    def command(*args: Any, **values: Any) -> None:
        source = SourceRepoOptions(*(values.pop(name) for name in from_names))
        fn(*args, source=source, **values)

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    del command.__wrapped__
    return command


async def open_source(source_opts: GlobalOptions, stack: StorageStack) -> Repository:
    """Open the source repository (its index not loaded)."""
    try:
        return await open_repo(source_opts, stack, load_index=False)
    except NoPasswordSource:
        raise NoPasswordSource(
            "No password for the source repository: set BBACKUP_FROM_PASSWORD, "
            "BBACKUP_FROM_PASSWORD_FILE, --from-password-file or --from-password-command, "
            "or run on a terminal."
        ) from None


def shared_chunker_key(source_opts: GlobalOptions) -> tuple[MasterKey, ChunkerParams]:
    """For `init --copy-chunker-params`: a new master key with the source's chunker seed
    and blob-ID key (its own encryption key), and the source's chunk sizes. A repository
    made so cuts and names chunks as the source does: `copy` between them keeps blob IDs,
    and the same files backed up to both deduplicate against copies."""
    stack = open_stack(source_opts)

    async def main() -> Repository:
        try:
            return await open_source(source_opts, stack)
        finally:
            await stack.storage.aclose()

    source = run_async(main())
    master = dataclasses.replace(
        MasterKey.generate(),
        id_key=source.master.id_key,
        chunker_seed=source.master.chunker_seed,
    )
    return master, source.config.chunker
