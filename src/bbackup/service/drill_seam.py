"""Where restore drills plug into a job's run: the call a run makes when a drill is due,
and whether this build has one. Finding out imports nothing heavy, so `status` can ask."""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from bbackup.repository import Repository
    from bbackup.service.config import DrillSettings, JobSettings

#: The module and function that provide the drill step (`bbackup drill`'s operation).
DRILL_MODULE, DRILL_FUNCTION = "bbackup.ops.drill_job", "drill_for_job"


class DrillStep(Protocol):
    """Prove that a sample of the job's snapshot `snapshot_id` (the run's new one, or None
    for the latest) restores, as `job.drill` asks; return the drill's report, with at least
    `ok` (bool) and `message` (one line). It records its own coverage in the repository."""

    async def __call__(
        self,
        repo: Repository,
        job: JobSettings,
        settings: DrillSettings,
        snapshot_id: str | None,
    ) -> dict[str, Any]: ...


def drills_available() -> bool:
    return importlib.util.find_spec(DRILL_MODULE) is not None


def available_drill_step() -> DrillStep | None:
    """The drill step if this build has it; None leaves the drill out of every run."""
    if not drills_available():
        return None
    step: DrillStep | None = getattr(importlib.import_module(DRILL_MODULE), DRILL_FUNCTION, None)
    return step
