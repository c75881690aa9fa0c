"""The repository config document: ID, format version, chunker, compression, pack size and
the optional object lock setting."""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass, field
from typing import Any

import msgpack

from bbackup.chunking import ChunkerParams, KiB, MiB
from bbackup.compression import DEFAULT_LEVEL
from bbackup.errors import IntegrityError
from bbackup.storage.object_lock import ObjectLockSetting

FORMAT_VERSION = 1
DEFAULT_PACK_SIZE = 16 * MiB
MIN_PACK_SIZE = 4 * MiB
MAX_PACK_SIZE = 128 * MiB


@dataclass(frozen=True, slots=True)
class RepositoryConfig:
    """Settings fixed at `init`; stored encrypted in the `config` object."""

    repository_id: str = field(default_factory=lambda: secrets.token_hex(32))
    version: int = FORMAT_VERSION
    chunker: ChunkerParams = field(default_factory=ChunkerParams)
    compression_level: int = DEFAULT_LEVEL
    pack_size: int = DEFAULT_PACK_SIZE
    #: Every object but lock documents is written with this retention (`init
    #: --object-lock`); absent from the configs of repositories made without it.
    object_lock: ObjectLockSetting | None = None

    def to_bytes(self) -> bytes:
        fields = asdict(self)
        if self.object_lock is None:
            del fields["object_lock"]  # the same bytes as before the field existed
        packed: bytes = msgpack.packb(fields)
        return packed

    @classmethod
    def from_bytes(cls, data: bytes) -> RepositoryConfig:
        try:
            raw: dict[str, Any] = msgpack.unpackb(data)
            if not isinstance(raw, dict):
                raise TypeError("the config is not a map")
            lock = raw.get("object_lock")
            config = cls(
                repository_id=raw["repository_id"],
                version=raw["version"],
                chunker=ChunkerParams(**raw["chunker"]),
                compression_level=raw["compression_level"],
                pack_size=raw["pack_size"],
                object_lock=None if lock is None else ObjectLockSetting(**lock),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise IntegrityError("config: malformed") from exc
        if type(config.version) is int and config.version != FORMAT_VERSION:
            raise IntegrityError(
                f"config: repository format version {config.version} is not supported "
                f"by this bbackup (supports {FORMAT_VERSION})"
            )
        try:
            _check(config)
        except (ValueError, TypeError) as exc:
            raise IntegrityError(f"config: malformed: {exc}") from exc
        return config


#: The chunk sizes FastCDC accepts: (min_size, avg_size, max_size) bounds, in bytes.
_CHUNK_SIZE_BOUNDS = ((64, MiB), (256, 4 * MiB), (KiB, 16 * MiB))


def _check(config: RepositoryConfig) -> None:
    """Types and ranges of a decoded config; the repository ID names the cache directory."""
    rid, chunker = config.repository_id, config.chunker
    if not isinstance(rid, str) or len(rid) != 64 or rid.strip("0123456789abcdef"):
        raise ValueError("the repository ID is 64 hex digits")
    sizes = (chunker.min_size, chunker.avg_size, chunker.max_size)
    numbers = (config.version, config.compression_level, config.pack_size, *sizes)
    if not all(type(n) is int for n in numbers):
        raise TypeError("config numbers are integers")
    if not all(low <= n <= high for n, (low, high) in zip(sizes, _CHUNK_SIZE_BOUNDS, strict=True)):
        raise ValueError("chunk sizes are outside what FastCDC accepts")
    if not sizes[0] <= sizes[1] <= sizes[2]:
        raise ValueError("chunk sizes are not in order")
    if not MIN_PACK_SIZE <= config.pack_size <= MAX_PACK_SIZE:
        raise ValueError("the pack size is outside 4-128 MiB")
