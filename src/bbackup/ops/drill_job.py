"""The drill step of a job's run (`bbackup run`, found through service.drill_seam): the
job's `drill` table turned into DrillOptions, and a drill of the run's snapshot or the
latest of the job's host and sources.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from bbackup.ops.drill import Drill, DrillOptions
from bbackup.ops.drill_sample import sample_fraction
from bbackup.ops.restore_reads import pack_read_settings
from bbackup.snapshot.store import SnapshotFilter, find_snapshot, load_snapshots

if TYPE_CHECKING:
    from bbackup.repository import Repository


class DrilledJob(Protocol):
    """What the drill step reads of a job (the service's JobSettings)."""

    @property
    def sources(self) -> tuple[str, ...]: ...

    @property
    def host(self) -> str | None: ...


class DrillSettings(Protocol):
    """A job's `drill` table (the service's DrillSettings)."""

    @property
    def sample(self) -> str | None: ...

    @property
    def files(self) -> int | None: ...

    @property
    def compare_source(self) -> bool: ...


async def drill_for_job(
    repo: Repository,
    job: DrilledJob,
    settings: DrillSettings,
    snapshot_id: str | None,
) -> dict[str, Any]:
    """The drill step of `bbackup run` (service.drill_seam): drill the run's snapshot (or
    the latest of the job's host and sources) as the job's `drill` table asks."""
    from bbackup.cache_paths import default_cache_root
    from bbackup.ops.backup import normalize_paths
    from bbackup.ops.damage_record import recording_damage

    snapshots = await load_snapshots(repo)
    if snapshot_id is not None:
        snapshot = find_snapshot(snapshots, snapshot_id)
    else:
        import socket

        paths = tuple(normalize_paths(job.sources))
        filters = SnapshotFilter(hosts=(job.host or socket.gethostname(),), paths=paths)
        snapshot = find_snapshot(snapshots, "latest", filters)
    reads = pack_read_settings(repo)
    options = DrillOptions(
        fraction=sample_fraction(settings.sample, "drill.sample") if settings.sample else None,
        files=settings.files,
        compare_source=settings.compare_source,
        scratch_root=str(default_cache_root()),
        connections=reads.connections,
        read_size=reads.read_size,
        max_gap=reads.max_gap,
    )
    warnings: list[str] = []
    drill = Drill(repo, snapshot, options, on_warning=warnings.append)
    await drill.plan()
    # A blob that fails verification is recorded, so backups upload it again.
    async with recording_damage(repo, "drill", warnings.append):
        report = await drill.run()
    return {**report.to_dict(), "warnings": warnings}
