"""The repository config document: ID, format version, chunker, compression and pack size."""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass, field
from typing import Any

import msgpack

from bbackup.chunking import ChunkerParams, MiB
from bbackup.compression import DEFAULT_LEVEL
from bbackup.errors import IntegrityError

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

    def to_bytes(self) -> bytes:
        packed: bytes = msgpack.packb(asdict(self))
        return packed

    @classmethod
    def from_bytes(cls, data: bytes) -> RepositoryConfig:
        try:
            raw: dict[str, Any] = msgpack.unpackb(data)
            config = cls(
                repository_id=raw["repository_id"],
                version=raw["version"],
                chunker=ChunkerParams(**raw["chunker"]),
                compression_level=raw["compression_level"],
                pack_size=raw["pack_size"],
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise IntegrityError("config: malformed") from exc
        if config.version != FORMAT_VERSION:
            raise IntegrityError(
                f"config: repository format version {config.version} is not supported "
                f"by this bbackup (supports {FORMAT_VERSION})"
            )
        return config
