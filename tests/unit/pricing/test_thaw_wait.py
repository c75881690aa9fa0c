"""The wait for archive restores: looks at pending packs only, with an interval that doubles
up to 16 times the first (15 minutes at most), and asks again for a pack whose restore is
neither under way nor ready (an expired copy) instead of waiting for it forever."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

import bbackup.ops.thaw
from bbackup.ops.pricing import DEFAULT_PRICES
from bbackup.ops.thaw import (
    MAX_POLL_SECONDS,
    ThawOptions,
    ThawProgress,
    request_restores,
    survey_packs,
    wait_for_restores,
)
from bbackup.storage import ObjectInfo, StorageProfile
from bbackup.storage.factory import PROFILES


@dataclass
class Archive:
    """Packs in GLACIER whose restores finish after a set number of looks (HEADs)."""

    #: name → looks until readable (None: the restore "expired": no state at all).
    looks_left: dict[str, int | None]
    requests: list[str] = field(default_factory=list)
    heads: list[str] = field(default_factory=list)

    @property
    def profile(self) -> StorageProfile:
        return PROFILES["s3"]

    async def list_packs(self, prefixes: tuple[str, ...] = ("data/", "tree/")) -> list[ObjectInfo]:
        stored = [ObjectInfo(n, 1000, 0.0, "GLACIER") for n in self.looks_left] + [
            ObjectInfo("data/ff/hot", 500, 0.0, "STANDARD")
        ]
        return [info for info in stored if info.name.startswith(prefixes)]

    async def stat_pack(self, name: str) -> ObjectInfo:
        if name not in self.looks_left:
            return ObjectInfo(name, 500, 0.0, "STANDARD")
        self.heads.append(name)
        left = self.looks_left[name]
        if left is None:
            state = None
        elif left <= 0:
            state = "restored"
        else:
            self.looks_left[name] = left - 1
            state = "ongoing"
        return ObjectInfo(name, 1000, 0.0, "GLACIER", state)

    async def request_pack_restore(self, name: str, days: int, tier: str) -> None:
        self.requests.append(name)
        if self.looks_left[name] is None:
            self.looks_left[name] = 1


@pytest.mark.parametrize("lookup", ["head each", "one listing"])
def test_wait_backs_off_and_looks_only_at_pending_packs(
    lookup: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if lookup == "one listing":
        monkeypatch.setattr(bbackup.ops.thaw, "HEAD_INSTEAD_OF_LISTING", 0)
    archive = Archive({"data/aa/quick": 1, "data/bb/slow": 6, "data/cc/ready": 0})
    options = ThawOptions(tier="bulk", days=2, poll_seconds=0.001)
    seen: list[tuple[int, float]] = []

    async def run() -> ThawProgress:
        survey = await survey_packs(
            archive, ["data/aa/quick", "data/bb/slow", "data/cc/ready", "data/ff/hot"],
            DEFAULT_PRICES, tier="bulk", days=2,
        )  # fmt: skip
        # The survey's HEAD saw all three under way (the third is ready already).
        assert [o.name for o in survey.to_request] == []
        requested = await request_restores(archive, survey, options)
        assert requested == []

        def note(p: ThawProgress) -> None:
            seen.append((p.ready, p.next_look_seconds))

        return await wait_for_restores(archive, survey, options, on_progress=note)

    progress = asyncio.run(run())

    assert progress.ready == progress.packs == 2  # the ready one was never waited for
    assert archive.requests == []
    # quick: ready at the second look; slow: looked at until ready, nothing else after.
    assert archive.heads.count("data/aa/quick") == 1 + 1
    assert archive.heads[-1] == "data/bb/slow"
    intervals = [interval for _, interval in seen if interval]
    assert intervals == [0.001, 0.002, 0.004, 0.008, 0.016, 0.016][: len(intervals)]


def test_a_restore_that_is_neither_under_way_nor_ready_is_requested_again() -> None:
    archive = Archive({"data/aa/one": 2})
    options = ThawOptions(poll_seconds=0.001)

    async def run() -> ThawProgress:
        survey = await survey_packs(archive, ["data/aa/one"], DEFAULT_PRICES, tier="bulk", days=1)
        archive.looks_left["data/aa/one"] = None
        return await wait_for_restores(archive, survey, options)

    progress = asyncio.run(run())

    assert archive.requests == ["data/aa/one"]
    assert progress.requested == 1 and progress.ready == 1


def test_the_interval_grows_to_sixteen_times_the_first_and_fifteen_minutes_at_most() -> None:
    assert ThawOptions(poll_seconds=60).max_poll_seconds == MAX_POLL_SECONDS == 900
    assert ThawOptions(poll_seconds=0.5).max_poll_seconds == 8
    assert ThawOptions(poll_seconds=3600).max_poll_seconds == 3600
