"""What a restore drill did and found: the report `Drill.run` returns (files and bytes
verified, packs proven, every failure), the progress it shows while it runs, and the
report's one-line summary.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from bbackup.ops.drill_record import Coverage
from bbackup.report_format import human_bytes


@dataclass(slots=True)
class DrillProgress:
    files: int = 0
    bytes: int = 0
    bytes_total: int = 0
    started: float = field(default_factory=time.monotonic)


@dataclass(slots=True)
class DrillReport:
    """What a drill did and found; `failures` name every file that failed."""

    snapshot_id: str
    ok: bool = True
    message: str = ""
    files: int = 0
    bytes: int = 0
    #: Files and plaintext bytes restored and read back identical to the snapshot.
    verified_files: int = 0
    verified_bytes: int = 0
    #: Data packs the sample read, and of those the ones proven (every blob read intact).
    packs_read: int = 0
    packs_proven: int = 0
    #: With compare_source: live files compared, and left out (changed since, missing).
    source_compared: int = 0
    source_skipped: int = 0
    #: {"path", "problem", "kind"}: kind is restore, verify, source or tree.
    failures: list[dict[str, str]] = field(default_factory=list)
    coverage: dict[str, Any] = field(default_factory=dict)
    record: str | None = None
    record_error: str | None = None
    duration_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def describe(report: DrillReport, coverage: Coverage) -> str:
    """The drill's result in one line (after "restore drill passed: " or "... failed: ")."""
    proven = (
        f"{coverage.packs_proven} of {coverage.packs_total} data packs "
        f"({100 * coverage.fraction:.0f}% of the data) proven restorable"
    )
    if not report.files and report.ok:
        return f"nothing to restore: the snapshot holds no file content; {proven}"
    if not report.ok:
        names = ", ".join(f["path"] for f in report.failures[:5])
        more = f" and {len(report.failures) - 5} more" if len(report.failures) > 5 else ""
        return f"{len(report.failures)} file(s) failed: {names}{more}; {proven}"
    compared = (
        f", {report.source_compared} compared with the source" if report.source_compared else ""
    )
    return (
        f"{report.verified_files} files "
        f"({human_bytes(report.verified_bytes)}) from {report.packs_proven} packs verified"
        f"{compared}; {proven}"
    )
