"""The repository another one is made from or copied from (`copy`, `init
--copy-chunker-params`): `--from-repo` and the `--from-*` options and BBACKUP_FROM_*
variables that open it, mirroring the target's `--repo`, password and `--s3-*` options."""

from __future__ import annotations

import dataclasses
from typing import Annotated

import typer

from bbackup.chunking import ChunkerParams
from bbackup.cli.opening import open_repo, open_stack, run_async
from bbackup.cli.options import GlobalOptions
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


def source_options(
    opts: GlobalOptions,
    repo: str | None,
    password_file: str | None,
    password_command: str | None,
    s3_endpoint: str | None,
    s3_region: str | None,
    s3_path_style: bool | None,
) -> GlobalOptions:
    """The options that open the source: the `--from-*` ones in place of the target's;
    connections, cache and output as for the target."""
    if not repo:
        raise UsageError(
            "no source repository given: pass --from-repo or set BBACKUP_FROM_REPOSITORY"
        )
    return dataclasses.replace(
        opts,
        repo=repo,
        password_file=password_file,
        password_command=password_command,
        s3_endpoint=s3_endpoint,
        s3_region=s3_region,
        s3_path_style=s3_path_style,
        password_variable="BBACKUP_FROM_PASSWORD",
        password_prompt="Password of the source repository",
        flag_prefix="--from-",
    )


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
