"""Key files: list, add, remove and re-password the keys that wrap one master key; export
the master key, and import an export as a new key file when every key file is lost."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass
from typing import Any

from bbackup.crypto.aead import Cipher
from bbackup.crypto.key_export import KeyExport, open_export, seal_export
from bbackup.crypto.keys import DEFAULT_KDF, KdfCost, describe_key_file, seal_key_file
from bbackup.errors import BbackupError, IntegrityError, NotFound, RepositoryNotFound
from bbackup.repository.config import RepositoryConfig
from bbackup.repository.key_files import parse_stored_key_file
from bbackup.repository.repository import CONFIG_KIND, CONFIG_NAME, Repository, current_user
from bbackup.repository.writer import document_name
from bbackup.storage import StorageStack


class KeyMismatch(BbackupError):
    """The exported key does not open this repository."""


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


async def export_key(
    repo: Repository, export_password: str, kdf: KdfCost = DEFAULT_KDF
) -> KeyExport:
    """The repository's master key wrapped under `export_password` at the cost `kdf`."""
    params = kdf.params()
    return await asyncio.to_thread(
        seal_export, repo.master, repo.config.repository_id, export_password, params
    )


async def import_key(
    stack: StorageStack,
    export: KeyExport,
    export_password: str,
    password: str,
    kdf: KdfCost = DEFAULT_KDF,
    *,
    source: str = "the key export",
) -> str:
    """Write a key file for `password` wrapping the master key of `export`, once that key
    has opened this repository's config; return the new key's ID. Needs no key file in
    the store: this is how a repository whose key files are all lost opens again.

    RepositoryNotFound without a config; WrongPassword if `export_password` does not open
    the export; KeyMismatch if the exported key is another repository's."""
    try:
        sealed_config = await stack.storage.get(CONFIG_NAME)
    except NotFound:
        raise RepositoryNotFound(f"no repository at {stack.storage.location}") from None
    master = await asyncio.to_thread(open_export, export, export_password, source)
    try:
        config = RepositoryConfig.from_bytes(
            Cipher(master).open_document(CONFIG_KIND, sealed_config)
        )
    except IntegrityError:
        config = None
    if config is None or config.repository_id != export.repository_id:
        raise KeyMismatch(
            f"{source} (repository {export.repository_id[:8]}) does not open the repository "
            f"at {stack.storage.location}: it is another repository's key (or that "
            "repository's config is damaged); nothing was written"
        )
    params = kdf.params()
    data = await asyncio.to_thread(
        seal_key_file,
        master,
        password,
        params,
        hostname=socket.gethostname(),
        username=current_user(),
    )
    name = document_name("keys", data)
    await stack.storage.put(name, data, if_absent=True)
    return name.rsplit("/", 1)[-1]
