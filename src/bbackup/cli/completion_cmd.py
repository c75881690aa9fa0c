"""`bbackup completion bash|zsh|fish`: the shell script that completes bbackup's commands,
options and choices; the shell then asks `bbackup` itself (with _BBACKUP_COMPLETE set).

typer's scripts and shell classes are used as they are; typer exports them only through
its --install-completion option, which the app leaves out, hence the private imports."""

from __future__ import annotations

import os
from typing import Annotated, Literal

import typer

from bbackup.cli.output import echo

#: Set by the completion script when the shell asks bbackup for completions.
COMPLETE_VARIABLE = "_BBACKUP_COMPLETE"

Shell = Literal["bash", "zsh", "fish"]


def prepare_completion() -> None:
    """Make typer answer the completion script's requests (its shell classes are
    registered only on demand, as the app has no --install-completion option)."""
    if os.environ.get(COMPLETE_VARIABLE):
        from typer._completion_classes import completion_init

        completion_init()


def register(app: typer.Typer) -> None:
    @app.command(
        "completion",
        help="Print the shell completion script for bash, zsh or fish.",
    )
    def completion(
        shell: Annotated[Shell, typer.Argument(help="The shell to complete in.")],
    ) -> None:
        from typer._completion_shared import get_completion_script

        echo(
            get_completion_script(prog_name="bbackup", complete_var=COMPLETE_VARIABLE, shell=shell)
        )
