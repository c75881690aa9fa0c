"""The repository: an encrypted, deduplicated store of blobs in packs, plus documents.

Nouns: a *blob* is a chunk of file content or a serialized tree; a *pack* is a stored
object holding many sealed blobs; the *index* maps blob IDs to pack locations; a
*document* is a small encrypted object (config, index segment, snapshot, lock) named by
the SHA-256 of its stored bytes; the *cache* keeps immutable documents and tree packs on
local disk. The layers above depend on the roles of `roles.py` (a blob loader, a blob
saver, a document store, a pack inventory), which a Repository plays.
"""

from __future__ import annotations

from bbackup.repository.config import RepositoryConfig
from bbackup.repository.damage import (
    DAMAGE_PREFIX,
    DamagedLocations,
    DamageRecord,
    merge_locations,
    not_yet_recorded,
)
from bbackup.repository.index import Index, IndexEntry, IndexSegment, PackInfo
from bbackup.repository.lock import RemovedLocks, RepositoryLock, list_locks, remove_stale_locks
from bbackup.repository.opening import init_repository, open_repository
from bbackup.repository.pack import PackedBlob, pack_object_name, parse_pack, verify_pack_id
from bbackup.repository.repository import Repository, current_user, require_intact_index
from bbackup.repository.roles import (
    BlobLoader,
    BlobSaver,
    BlobSaverSource,
    DocumentStore,
    PackInventory,
)
from bbackup.repository.writer import BlobWriter, PreparedBlob, WriteStats

__all__ = [
    "DAMAGE_PREFIX",
    "BlobLoader",
    "BlobSaver",
    "BlobSaverSource",
    "BlobWriter",
    "DamageRecord",
    "DamagedLocations",
    "DocumentStore",
    "Index",
    "IndexEntry",
    "IndexSegment",
    "PackInfo",
    "PackInventory",
    "PackedBlob",
    "PreparedBlob",
    "RemovedLocks",
    "Repository",
    "RepositoryConfig",
    "RepositoryLock",
    "WriteStats",
    "current_user",
    "init_repository",
    "list_locks",
    "merge_locations",
    "not_yet_recorded",
    "open_repository",
    "pack_object_name",
    "parse_pack",
    "remove_stale_locks",
    "require_intact_index",
    "verify_pack_id",
]
