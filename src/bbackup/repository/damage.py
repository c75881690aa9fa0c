"""Damage records: small encrypted documents under damaged/ that name the packs `check`
(or a restore) found damaged, and the blobs in each that failed verification, so that
every host stops deduplicating against those blobs until `repair packs` has dealt with
them. docs/format.md ("Damage records") describes the bytes.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import msgpack

from bbackup.errors import IntegrityError

DAMAGE_KIND = "damage"
DAMAGE_PREFIX = "damaged/"
#: The last second a record's time may name (9999-12-31 23:59:59 UTC): any later one
#: cannot be shown as a date.
_LATEST = 253_402_300_799
#: pack ID → the IDs of the blobs that failed verification at their place in that pack
#: (empty: the pack itself is damaged, e.g. its header or name, but no blob is known bad).
DamagedLocations = dict[str, frozenset[bytes]]


@dataclass(frozen=True, slots=True)
class DamageRecord:
    """One stored damage record: what one run found damaged, when, where and by what."""

    packs: DamagedLocations
    time: float = field(default_factory=time.time)
    host: str = field(default_factory=socket.gethostname)
    #: What found it: "check", "check --read-data", "restore".
    found_by: str = ""

    def to_bytes(self) -> bytes:
        packed: bytes = msgpack.packb(
            {
                "version": 1,
                "packs": {p: sorted(blobs) for p, blobs in sorted(self.packs.items())},
                "time": self.time,
                "host": self.host,
                "found_by": self.found_by,
            }
        )
        return packed

    @classmethod
    def from_bytes(cls, data: bytes) -> DamageRecord:
        try:
            # msgpack bounds every length by the document's size; bins are at most an ID.
            raw = msgpack.unpackb(data, max_bin_len=32)
            if type(raw) is not dict or raw.get("version") != 1:
                raise ValueError("a damage record is a map of version 1")
            packs = raw["packs"]
            if type(packs) is not dict or not packs:
                raise ValueError("a damage record names at least one pack")
            found: DamagedLocations = {}
            for pack_id, blobs in packs.items():
                if type(blobs) is not list or not all(_is_blob_id(b) for b in blobs):
                    raise ValueError("a damaged pack's blobs are a list of 32-byte IDs")
                found[_pack_id(pack_id)] = frozenset(blobs)
            when, host, found_by = raw["time"], raw["host"], raw.get("found_by", "")
            if type(when) not in (int, float) or not 0 <= when <= _LATEST:
                raise ValueError("a damage record's time is seconds from 1970 to 9999")
            if type(host) is not str or type(found_by) is not str:
                raise TypeError("a damage record's host and finder are text")
        except (ValueError, KeyError, TypeError, OverflowError) as exc:
            raise IntegrityError("damage record is malformed") from exc
        return cls(found, float(when), host, found_by)

    def describe(self) -> str:
        at = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(self.time))
        return f"{self.found_by or 'a check'} on {self.host or 'an unnamed host'} at {at}"


def merge_locations(records: Iterable[Mapping[str, frozenset[bytes]]]) -> DamagedLocations:
    """The union of several records' damaged locations."""
    merged: dict[str, frozenset[bytes]] = {}
    for packs in records:
        for pack_id, blobs in packs.items():
            merged[pack_id] = merged.get(pack_id, frozenset()) | blobs
    return merged


def not_yet_recorded(found: DamagedLocations, recorded: DamagedLocations) -> DamagedLocations:
    """What `found` adds to `recorded`: packs not recorded, or recorded without some of
    the blobs found now (all of those pack's blobs found, so a record stays whole)."""
    return {
        pack_id: blobs
        for pack_id, blobs in found.items()
        if pack_id not in recorded or not blobs <= recorded[pack_id]
    }


def _is_blob_id(value: object) -> bool:
    return type(value) is bytes and len(value) == 32


def _pack_id(value: object) -> str:
    if not isinstance(value, str) or len(value) != 64 or value.strip("0123456789abcdef"):
        raise ValueError("a pack ID is 64 hex digits")
    return value
