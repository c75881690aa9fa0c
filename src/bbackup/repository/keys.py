"""Key files: list, add, remove and re-password the keys that wrap one master key."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

from bbackup.crypto.keys import calibrate_kdf, describe_key_file, seal_key_file
from bbackup.errors import BbackupError
from bbackup.repository.repository import Repository, current_user


@dataclass(frozen=True, slots=True)
class KeyInfo:
    key_id: str
    current: bool
    details: dict[str, Any]


async def list_keys(repo: Repository) -> list[KeyInfo]:
    return [
        KeyInfo(name.rsplit("/", 1)[-1], name == repo.key_name, describe_key_file(data))
        for name, data in await repo.key_files()
    ]


async def add_key(repo: Repository, password: str) -> str:
    """Wrap the master key under another password; return the new key's ID."""
    data = seal_key_file(
        repo.master,
        password,
        calibrate_kdf(),
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


async def change_password(repo: Repository, password: str) -> str:
    """Add a key for the new password, then remove the one that opened the repository."""
    new_id = await add_key(repo, password)
    await repo.delete_key_file(repo.key_name)
    repo.key_name = f"keys/{new_id}"
    return new_id
