"""The documents of a Repository: small sealed objects named by the SHA-256 of their
stored bytes, read (ahead, too), listed, written and deleted, plus the key files. A
document that fails its name or its authentication is named once (`note_damage`).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable

from bbackup.crypto.aead import Cipher
from bbackup.crypto.keys import MasterKey
from bbackup.errors import IntegrityError
from bbackup.repository.cache import CachingStorage
from bbackup.repository.config import RepositoryConfig
from bbackup.repository.damage import DAMAGE_PREFIX
from bbackup.repository.key_files import read_key_files
from bbackup.repository.read_ahead import DocumentReadAhead
from bbackup.repository.roles import DELETABLE_DOCUMENT_PREFIXES, PACK_PREFIXES
from bbackup.repository.writer import document_name
from bbackup.storage import ObjectInfo, Storage, StorageProfile, StorageStack

#: Documents named by the SHA-256 of their stored bytes (`document_name`): every read
#: checks the name, so a copied, renamed or replayed document is refused. (Key files are
#: named so too and checked where they are read, `intact_key_files`; see docs/format.md,
#: "Names are bound to content".)
CONTENT_NAMED_PREFIXES = ("index/", "snapshots/", "locks/", DAMAGE_PREFIX, "drills/")
#: What to do about each kind of damaged document, said once with its name.
DAMAGE_ADVICE = {
    "index/": "skipped; run `bbackup repair index`",
    "snapshots/": "skipped; the other snapshots are not affected",
    "locks/": "ignored; `bbackup unlock` removes it",
    DAMAGE_PREFIX: "ignored; `bbackup repair packs` finds the damage again and removes it",
    "drills/": "ignored; the next drill proves its packs again",
    "tree/": "snapshots whose directories sit in its damaged part cannot be read",
}
#: Called with one line naming a damaged object, what is wrong and what happens now.
DamageReporter = Callable[[str], None]


class DamagedDocument(IntegrityError):
    """A stored document that cannot be used: damaged, or stored under another name."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{name}: {problem}")
        self.name = name
        self.problem = problem


def require_prefix(name: str, prefixes: tuple[str, ...], what: str) -> None:
    """A role reaches only its own objects: a name elsewhere is a bug, not a request."""
    if not name.startswith(prefixes):
        raise ValueError(f"{name!r} is not a {what} name")


class RepositoryDocuments:
    """The storage, keys and documents of an open repository: the DocumentStore of
    `roles.py`, and the base of `Repository` (which adds blobs, packs and the index)."""

    def __init__(
        self,
        stack: StorageStack,
        storage: Storage,
        config: RepositoryConfig,
        master: MasterKey,
        key_name: str,
        on_damage: DamageReporter | None = None,
    ) -> None:
        self.stack = stack
        self.storage = storage
        self.config = config
        self.master = master
        self.key_name = key_name
        self.cipher = Cipher(master)
        self.on_damage = on_damage
        #: Every damaged object this process has come across: name → what is wrong.
        self.damaged: dict[str, str] = {}
        self._read_ahead: list[DocumentReadAhead] = []
        #: Listings under way that answer a listing of a longer prefix (`list_packs`).
        self._shared_listings: dict[str, asyncio.Future[list[ObjectInfo]]] = {}

    @property
    def location(self) -> str:
        return self.stack.storage.location

    @property
    def profile(self) -> StorageProfile:
        """What kind of store this is (remote or local, its sizes and capabilities)."""
        return self.stack.profile

    # ---- damage -----------------------------------------------------------------------

    def note_pack_damage(self, name: str, problem: str) -> None:
        """`note_damage` for packs only: a document's own reader names it, telling damage
        from a wrong name."""
        if name.startswith(PACK_PREFIXES):
            self.note_damage(name, problem)

    def note_damage(self, name: str, problem: str) -> None:
        """Remember a damaged object and name it through `on_damage`, once per process."""
        if name in self.damaged:
            return
        self.damaged[name] = problem
        if self.on_damage is not None:
            advice = next((a for p, a in DAMAGE_ADVICE.items() if name.startswith(p)), "")
            self.on_damage(f"{name}: {problem}" + (f", {advice}" if advice else ""))

    # ---- documents ---------------------------------------------------------------------

    def read_ahead(
        self,
        prefix: str,
        *,
        listing: asyncio.Task[list[str]] | None = None,
        documents: bool = True,
    ) -> None:
        """Start listing `prefix` (or take the `listing` under way) and, with `documents`,
        reading its documents now, for `list_names` and `load_document` later in this
        command. Any write drops what is read ahead: a command that locks (prune,
        forget) reads what it decides on after its lock."""
        ahead = DocumentReadAhead(self.storage, prefix, listing=listing, documents=documents)
        self._read_ahead.append(ahead)

    async def stop_read_ahead(self) -> None:
        """Drop and stop whatever `read_ahead` started."""
        ahead, self._read_ahead = self._read_ahead, []
        for documents in ahead:
            await documents.aclose()

    async def save_document(self, directory: str, kind: str, payload: bytes) -> str:
        await self.stop_read_ahead()
        sealed = self.cipher.seal_document(kind, payload)
        name = document_name(directory, sealed)
        await self.storage.put(name, sealed, if_absent=True)
        return name

    async def load_document(self, name: str, kind: str) -> bytes:
        """A document's payload; a damaged or misnamed one is named through `on_damage`
        and raises DamagedDocument (an IntegrityError)."""
        try:
            return await self._read_document(name, kind)
        except DamagedDocument as exc:
            self.note_damage(name, exc.problem)
            raise

    async def _read_document(self, name: str, kind: str) -> bytes:
        """Read, check the name against the content, and open a document."""
        read = next((r for a in self._read_ahead if (r := a.take_read(name)) is not None), None)
        sealed = await (read if read is not None else self.storage.get(name))
        try:
            payload = self.cipher.open_document(kind, sealed)
        except IntegrityError as exc:
            raise DamagedDocument(name, f"damaged ({exc})") from None
        if name.startswith(CONTENT_NAMED_PREFIXES):
            digest = hashlib.sha256(sealed).hexdigest()
            if digest != name.rsplit("/", 1)[-1]:
                # Authentic content under a name that is not its hash: a copy, a rename
                # or a replay of another document (a flipped bit fails authentication).
                raise DamagedDocument(
                    name,
                    f"misnamed (an intact {kind} document whose name would be "
                    f"{name.rsplit('/', 1)[0]}/{digest[:16]}…: copied or renamed)",
                )
        return payload

    async def list_names(self, prefix: str) -> list[str]:
        ahead = (a.take_listing() for a in self._read_ahead if a.prefix == prefix)
        listing = next((task for task in ahead if task is not None), None)
        shared = next((t for p, t in self._shared_listings.items() if prefix.startswith(p)), None)
        if listing is not None:
            names = await listing
        elif shared is not None:
            # Shielded: this reader giving up must not cancel the listing's owner.
            names = [i.name for i in await asyncio.shield(shared) if i.name.startswith(prefix)]
        else:
            names = [info.name async for info in self.storage.list(prefix)]
        if isinstance(self.storage, CachingStorage):
            self.storage.prune_missing(prefix, set(names))
        return names

    async def delete_document(self, name: str) -> None:
        require_prefix(name, DELETABLE_DOCUMENT_PREFIXES, "deletable document")
        await self.stop_read_ahead()
        await self.storage.delete(name)

    async def document_mtime(self, name: str) -> float:
        return (await self.storage.stat(name)).mtime

    # ---- key files ---------------------------------------------------------------------

    async def key_files(self) -> list[tuple[str, bytes]]:
        """Every key file, as (name, stored bytes)."""
        return await read_key_files(self.storage)

    async def save_key_file(self, key_file: bytes) -> str:
        name = document_name("keys", key_file)
        await self.storage.put(name, key_file, if_absent=True)
        return name

    async def delete_key_file(self, name: str) -> None:
        require_prefix(name, ("keys/",), "key file")
        await self.storage.delete(name)

    async def aclose(self) -> None:
        await self.stop_read_ahead()
        await self.storage.aclose()
