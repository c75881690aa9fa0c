"""What a backup counts: live progress for the display, and the summary that is stored in
the snapshot and printed as the --json summary."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(slots=True)
class BackupProgress:
    """Live counters for progress display; written by the archiver, read by the CLI."""

    files: int = 0
    dirs: int = 0
    bytes_read: int = 0
    bytes_seen: int = 0
    errors: int = 0
    started: float = field(default_factory=time.monotonic)


@dataclass(slots=True)
class BackupSummary:
    """What one backup did; stored in the snapshot and printed as the --json summary."""

    snapshot_id: str = ""
    type: str = "incremental"
    parent: str | None = None
    files_new: int = 0
    files_changed: int = 0
    files_unchanged: int = 0
    dirs: int = 0
    total_files: int = 0
    total_bytes: int = 0
    bytes_read: int = 0
    bytes_added: int = 0
    bytes_stored: int = 0
    packs_written: int = 0
    #: Packs an interrupted backup left unindexed that this one indexed and reused.
    packs_adopted: int = 0
    bytes_adopted: int = 0
    errors: int = 0
    error_list: list[dict[str, str]] = field(default_factory=list)
    duration_seconds: float = 0.0
    requests: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
