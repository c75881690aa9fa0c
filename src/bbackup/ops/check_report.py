"""What a check found (CheckReport): its errors and warnings, what it counted and read,
and the damage it recorded; REPAIR_PACKS_ADVICE ends each line about a damaged pack."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

#: What to do about a damaged or missing pack.
REPAIR_PACKS_ADVICE = "run `bbackup repair packs`"


@dataclass(slots=True)
class CheckReport:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    snapshots: int = 0
    trees: int = 0
    blobs_referenced: int = 0
    packs: int = 0
    packs_read: int = 0
    bytes_read: int = 0
    #: Storage requests of the whole run by kind (filled in by the caller that owns the stack).
    requests: dict[str, int] = field(default_factory=dict)
    #: Stored packs that no index lists: name → size (one summary line in `warnings`).
    unindexed_packs: dict[str, int] = field(default_factory=dict)
    #: Packs that earlier damage records name and `repair packs` has not dealt with yet.
    recorded_damage: list[str] = field(default_factory=list)
    #: The damage record this check stored (None: nothing new was found, or not stored).
    damage_record: str | None = None

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}
