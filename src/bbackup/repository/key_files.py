"""Key files as stored: read them all, check each against its name, skip the damaged.

A key file is named by the SHA-256 of its bytes (docs/format.md, "Names are bound to
content"); one that fails that check or does not parse is reported once and never keeps
another key file from opening the repository.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from bbackup.crypto.keys import KeyFile, parse_key_file
from bbackup.errors import IntegrityError
from bbackup.repository.writer import document_name
from bbackup.storage import Storage


async def read_key_files(storage: Storage) -> list[tuple[str, bytes]]:
    names = [info.name async for info in storage.list("keys/")]
    blobs = await asyncio.gather(*(storage.get(n) for n in names))
    return list(zip(names, blobs, strict=True))


def parse_stored_key_file(name: str, data: bytes) -> KeyFile:
    """The key file stored as `name`, parsed; IntegrityError saying why if it is damaged:
    its bytes do not match its name (the SHA-256 of what was stored: a flipped bit, a
    truncated upload), or it is not a well-formed key file."""
    if document_name("keys", data) != name:
        raise IntegrityError("its content does not match its name (SHA-256)")
    return parse_key_file(data)


def intact_key_files(
    keys: Iterable[tuple[str, bytes]], on_damaged: Callable[[str], None] | None = None
) -> list[tuple[str, KeyFile]]:
    """The key files that are intact, parsed; IntegrityError naming them if none is.

    A damaged one (`parse_stored_key_file`) is reported to `on_damaged` (one line naming
    it) and skipped, so it never keeps another key file from opening the repository, nor
    passes for a wrong password.
    """
    intact: list[tuple[str, KeyFile]] = []
    damaged: list[str] = []
    for name, data in keys:
        try:
            intact.append((name, parse_stored_key_file(name, data)))
        except IntegrityError as exc:
            damaged.append(f"{name} ({exc.message})")
            if on_damaged is not None:
                on_damaged(f"key file {name}: damaged ({exc.message}), skipped")
    if damaged and not intact:
        raise IntegrityError(f"every key file is damaged: {'; '.join(damaged)}")
    return intact
