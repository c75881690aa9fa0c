"""Create a repository (`init_repository`) and open one with a password (`open_repository`).

Opening reads the config and the key files, unwraps the master key with the first intact
key file the password opens, and wraps the storage in the local cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Callable, Iterable
from pathlib import Path

from bbackup.cache_paths import default_cache_root
from bbackup.crypto.aead import Cipher
from bbackup.crypto.keys import (
    DEFAULT_KDF,
    KdfCost,
    KeyFile,
    MasterKey,
    seal_key_file,
    unwrap_key_file,
)
from bbackup.errors import (
    IntegrityError,
    NotFound,
    RepositoryAlreadyExists,
    RepositoryNotFound,
    WrongPassword,
)
from bbackup.repository.cache import CachingStorage, keep_key_copy
from bbackup.repository.config import RepositoryConfig
from bbackup.repository.damage import DAMAGE_PREFIX
from bbackup.repository.documents import DamageReporter
from bbackup.repository.key_files import intact_key_files, read_key_files
from bbackup.repository.read_ahead import listed, start_listing
from bbackup.repository.repository import CONFIG_KIND, CONFIG_NAME, Repository, current_user
from bbackup.repository.writer import document_name
from bbackup.storage import Storage, StorageStack

#: What `load_index` lists (and the snapshots, which whoever loads the index reads next).
INDEX_LISTINGS = ("index/", DAMAGE_PREFIX, "snapshots/")
#: Key files as stored: (name, bytes).
KeyBytes = list[tuple[str, bytes]]
#: keys/ and locks/ are neighbours (nothing a repository stores sorts between them): on a
#: remote store one listing of the span from `keys` to `locks0` ('0' follows '/') finds
#: the key files and the locks, which a command that locks checks next.
KEYS_AND_LOCKS = ("keys", "locks0")


async def init_repository(
    stack: StorageStack,
    password: str,
    config: RepositoryConfig | None = None,
    *,
    kdf: KdfCost = DEFAULT_KDF,
    remember_key: Path | None = None,
    master: MasterKey | None = None,
) -> RepositoryConfig:
    """Create a repository: a master key (`master`, else a new one), its first key file
    and the config. `kdf`: the key file's derivation cost; `remember_key`: keep a copy of
    the key file there, as `open_repository` does."""
    await stack.create_container()
    storage = stack.storage
    try:
        await storage.stat(CONFIG_NAME)
    except NotFound:
        pass
    else:
        raise RepositoryAlreadyExists(f"a repository already exists at {storage.location}")
    config = config or RepositoryConfig()
    stack.apply_object_lock(config.object_lock)
    master = master or MasterKey.generate()
    key_file = seal_key_file(
        master, password, kdf.params(), hostname=socket.gethostname(), username=current_user()
    )
    await storage.put(document_name("keys", key_file), key_file, if_absent=True)
    cipher = Cipher(master)
    await storage.put(CONFIG_NAME, cipher.seal_document(CONFIG_KIND, config.to_bytes()))
    if remember_key is not None:
        keep_key_copy(remember_key, key_file)
    return config


def _remembered_key_name(remember_key: Path | None) -> str | None:
    """The name of the key file whose copy `remember_key` holds (it is named by its
    content), or None where there is no copy."""
    if remember_key is None:
        return None
    try:
        return document_name("keys", remember_key.read_bytes())
    except OSError:
        return None


async def _first_key_files(
    storage: Storage, remembered: str | None, *, remote: bool
) -> tuple[KeyBytes, bool, list[str] | None]:
    """(key files to try first, whether they are all there are, the names under locks/ if
    they were listed too). The key file that opened the repository last time is fetched
    by name, no listing: it is read from the store, not the cache, so a key removed since
    no longer opens it. Gone: every key file, listed with the locks on a remote store."""
    if remembered is not None:
        try:
            return [(remembered, await storage.get(remembered))], False, None
        except NotFound:
            pass
    if not remote:
        return await read_key_files(storage), True, None
    after, before = KEYS_AND_LOCKS
    names = [info.name async for info in storage.list("", after=after, before=before)]
    keys = [n for n in names if n.startswith("keys/")]
    stored = await asyncio.gather(*(storage.get(n) for n in keys))
    return list(zip(keys, stored, strict=True)), True, [n for n in names if n.startswith("locks/")]


async def _unwrap(
    storage: Storage,
    keys: KeyBytes,
    password: str,
    on_damaged_key: Callable[[str], None] | None,
) -> tuple[str, MasterKey]:
    if not keys:
        raise IntegrityError(f"repository at {storage.location} has no key files")
    intact = intact_key_files(keys, on_damaged_key)
    return await asyncio.to_thread(_open_any, intact, password)


def _open_any(keys: Iterable[tuple[str, KeyFile]], password: str) -> tuple[str, MasterKey]:
    for name, key_file in keys:
        try:
            return name, unwrap_key_file(key_file, password)
        except WrongPassword:
            continue
    raise WrongPassword()


async def open_repository(
    stack: StorageStack,
    password: str,
    *,
    use_cache: bool = True,
    cache_root: Path | None = None,
    load_index: bool = True,
    remember_key: Path | None = None,
    on_damage: DamageReporter | None = None,
    on_damaged_key: Callable[[str], None] | None = None,
) -> Repository:
    """Open a repository with a password; RepositoryNotFound, WrongPassword (no intact
    key file opens with it) or IntegrityError (every key file is damaged) otherwise.

    `remember_key`: keep a copy of the key file that opened it there (see
    `cache_paths.unlock_hint`); `on_damaged_key`: told of each damaged key file, skipped
    (`intact_key_files`); `on_damage`: hears of each damaged object the repository skips,
    once."""
    storage = stack.storage
    # The config and the key files are independent: on a remote store, one round trip
    # instead of two. The config's error still comes first, as when read on its own.
    remembered = _remembered_key_name(remember_key)
    sealed_config, first = await asyncio.gather(
        storage.get(CONFIG_NAME),
        _first_key_files(storage, remembered, remote=stack.profile.remote),
        return_exceptions=True,
    )
    if isinstance(sealed_config, NotFound):
        raise RepositoryNotFound(f"no repository at {storage.location}") from None
    if isinstance(sealed_config, BaseException):
        raise sealed_config
    if isinstance(first, BaseException):
        raise first
    keys, complete, locks = first
    # What loading the index lists is listed while the key is derived (half a second or
    # more of an idle network); listings are never cached, so this costs no request.
    listings = {p: start_listing(storage, p) for p in INDEX_LISTINGS} if load_index else {}
    try:
        try:
            key_name, master = await _unwrap(storage, keys, password, on_damaged_key)
        except (WrongPassword, IntegrityError):
            if complete:
                raise
            # The password opens another key file than last time's (or that copy is
            # damaged): try every other one, as without a copy.
            others = [(n, k) for n, k in await read_key_files(storage) if n != remembered]
            if not others:
                raise
            keys = others
            key_name, master = await _unwrap(storage, keys, password, on_damaged_key)
    except BaseException:
        for listing in listings.values():
            listing.cancel()
        await asyncio.gather(*listings.values(), return_exceptions=True)
        raise
    if remember_key is not None:
        keep_key_copy(remember_key, dict(keys)[key_name])
    config = RepositoryConfig.from_bytes(Cipher(master).open_document(CONFIG_KIND, sealed_config))
    stack.apply_object_lock(config.object_lock)
    if use_cache:
        directory = (cache_root or default_cache_root()) / config.repository_id
        with contextlib.suppress(OSError):  # its mtime is its last use (`bbackup cache`)
            os.utime(directory)
        storage = CachingStorage(storage, directory)
    repo = Repository(stack, storage, config, master, key_name, on_damage)
    if isinstance(storage, CachingStorage):
        storage.on_mismatch = repo.note_pack_damage
    if locks is not None:
        # For the lock check before a lock is written (a command that locks starts with
        # it); the check after writing lists again, and any write drops this listing.
        repo.read_ahead("locks/", listing=listed(locks), documents=False)
    if load_index:
        # Whoever needs the index reads the snapshots next (restore, ls, diff, check,
        # find, stats): their documents come beside the index, not after it.
        for prefix, listing in listings.items():
            repo.read_ahead(prefix, listing=listing, documents=prefix == "snapshots/")
        try:
            await repo.load_index()
        except BaseException:
            await repo.stop_read_ahead()
            raise
    return repo
