"""What a restore reports: its progress while it runs, its summary at the end (the
`--json` result and the source of its exit code), and the callback type through which it
reports what happens at a path.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(slots=True)
class RestoreProgress:
    files: int = 0
    bytes_written: int = 0
    bytes_total: int = 0
    #: Planning is over: `bytes_total` is final (while planning it only grows).
    planned: bool = False
    started: float = field(default_factory=time.monotonic)


@dataclass(slots=True)
class RestoreSummary:
    snapshot_id: str = ""
    dry_run: bool = False
    #: Regular files restored whole (with --dry-run: that would be written); damaged
    #: ones are in `damaged` instead, hard links in `links`.
    files: int = 0
    dirs: int = 0
    links: int = 0
    #: Plaintext bytes written (with --dry-run: that would be).
    bytes: int = 0
    #: Plaintext bytes an interrupted restore's partial files already held in place.
    bytes_reused: int = 0
    #: Bytes of pack ranges the restore reads (with --dry-run: would read).
    bytes_to_download: int = 0
    #: Entries already identical to the snapshot's (--overwrite if-changed): not written.
    unchanged: int = 0
    #: Entries left as they were because of --overwrite if-newer or never.
    kept: int = 0
    #: Entries --delete removed (or would remove).
    deleted: int = 0
    errors: int = 0
    error_list: list[dict[str, str]] = field(default_factory=list)
    #: Entries left out on purpose (sockets: nothing can be restored of them).
    skipped: int = 0
    skipped_list: list[dict[str, str]] = field(default_factory=list)
    #: Files that could not be fully restored: path, where they were kept, blobs lost.
    damaged: list[dict[str, Any]] = field(default_factory=list)
    #: Directories whose listing could not be read: nothing below them was restored.
    damaged_trees: list[dict[str, str]] = field(default_factory=list)
    #: --verify: files and bytes read back and found identical, and files that were not.
    verified_files: int = 0
    verified_bytes: int = 0
    verify_failures: list[dict[str, str]] = field(default_factory=list)
    duration_seconds: float = 0.0
    requests: dict[str, int] = field(default_factory=dict)

    @property
    def integrity_failed(self) -> bool:
        """Something the snapshot holds could not be restored or verified (exit 13)."""
        return bool(self.damaged or self.damaged_trees or self.verify_failures)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: Where a restore reports what happens at a path: (path, message or action).
PathEvent = Callable[[bytes, str], None]
