"""The options that set what a new key file's key derivation costs (`init`, `key add`,
`key passwd`)."""

from __future__ import annotations

from typing import Annotated

import typer

#: The cost of a new key file's key derivation (README: "Key derivation cost").
KdfMemoryOpt = Annotated[
    int | None,
    typer.Option(
        "--kdf-memory",
        metavar="MIB",
        help="Argon2id memory of the new key, 8-2048 MiB (default 64).",
    ),
]
KdfTimeOpt = Annotated[
    int | None,
    typer.Option(
        "--kdf-time",
        metavar="PASSES",
        help="Argon2id passes of the new key, 1-1000 (default: as many as cost 0.5 s of CPU).",
    ),
]
