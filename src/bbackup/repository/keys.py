"""Key files: list, add, remove and re-password the keys that wrap one master key."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

from bbackup.crypto.keys import DEFAULT_KDF, KdfCost, describe_key_file, seal_key_file
from bbackup.errors import BbackupError, IntegrityError
from bbackup.repository.key_files import parse_stored_key_file
from bbackup.repository.repository import Repository, current_user


@dataclass(frozen=True, slots=True)
class KeyInfo:
    key_id: str
    current: bool
    details: dict[str, Any]


async def list_keys(repo: Repository) -> list[KeyInfo]:
    """Every key file; a damaged one has only `damaged` (why) in its details, so that it
    can be seen and removed."""
    return [
        KeyInfo(name.rsplit("/", 1)[-1], name == repo.key_name, _details(name, data))
        for name, data in await repo.key_files()
    ]


def _details(name: str, data: bytes) -> dict[str, Any]:
    try:
        parse_stored_key_file(name, data)
    except IntegrityError as exc:
        return {"damaged": exc.message}
    return describe_key_file(data)


async def add_key(repo: Repository, password: str, kdf: KdfCost = DEFAULT_KDF) -> str:
    """Wrap the master key under another password, at the derivation cost `kdf`; return
    the new key's ID."""
    data = seal_key_file(
        repo.master,
        password,
        kdf.params(),
        hostname=socket.gethostname(),
        username=current_user(),
    )
    name = await repo.save_key_file(data)
    return name.rsplit("/", 1)[-1]


async def remove_key(repo: Repository, key_id: str) -> str:
    """Remove a key by ID prefix; the key used to open the repository cannot be removed."""
    matches = [k for k in await list_keys(repo) if k.key_id.startswith(key_id)]
    if len(matches) != 1:
        raise BbackupError(
            f"key {key_id!r}: {'no' if not matches else 'more than one'} key matches"
        )
    key = matches[0]
    if key.current:
        raise BbackupError("refusing to remove the key this command was opened with")
    await repo.delete_key_file(f"keys/{key.key_id}")
    return key.key_id


async def change_password(repo: Repository, password: str, kdf: KdfCost = DEFAULT_KDF) -> str:
    """Add a key for the new password, then remove the one that opened the repository."""
    new_id = await add_key(repo, password, kdf)
    await repo.delete_key_file(repo.key_name)
    repo.key_name = f"keys/{new_id}"
    return new_id
