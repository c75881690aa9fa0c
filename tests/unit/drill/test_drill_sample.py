"""Choosing a drill's sample and keeping its records: never-proven packs come first, a
year of weekly 5 % drills proves every pack, a record survives its bytes, merged records
keep every proof, and the scratch directory goes away on an error and after a killed
drill."""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from bbackup.errors import UsageError
from bbackup.ops.drill_record import (
    MERGE_ABOVE,
    DrillRecord,
    coverage_of,
    load_drill_records,
    save_drill_record,
)
from bbackup.ops.drill_sample import SampleFile, choose_sample, sample_fraction
from bbackup.ops.drill_scratch import SCRATCH_PREFIX, prepare_scratch_root, scratch_directory


def files_over(packs: int, per_pack: int = 3) -> list[SampleFile]:
    return [
        SampleFile(f"/src/p{p}/f{i}".encode(), 100, frozenset({f"{p:064x}"}))
        for p in range(packs)
        for i in range(per_pack)
    ]


def test_a_fraction_takes_whole_packs_never_proven_first() -> None:
    files = files_over(10)
    proven = {f"{p:064x}": 1000.0 + p for p in range(7)}  # packs 7, 8 and 9 never proven
    sample = choose_sample(files, proven, fraction=0.2, count=None, rng=random.Random())
    packs = {p for f in sample for p in f.packs}
    assert len(packs) == 2 and packs <= {f"{p:064x}" for p in (7, 8, 9)}
    assert len(sample) == 6  # every file of both packs


def test_a_count_spreads_files_one_per_pack() -> None:
    sample = choose_sample(files_over(10), {}, fraction=None, count=4, rng=random.Random())
    assert len(sample) == 4 and len({p for f in sample for p in f.packs}) == 4


def test_a_year_of_weekly_five_percent_drills_proves_every_pack() -> None:
    files = files_over(400, per_pack=2)
    proven: dict[str, float] = {}
    rng = random.Random()
    first = 0
    for week in range(52):
        for f in choose_sample(files, proven, fraction=0.05, count=None, rng=rng):
            proven.update(dict.fromkeys(f.packs, float(week)))
        first = first or len(proven)
    assert first == 20
    assert len(proven) == 400


def test_sample_fraction_takes_percentages_only() -> None:
    assert sample_fraction("5%") == 0.05
    for bad in ("5", "0%", "101%", "x%"):
        with pytest.raises(UsageError, match="--sample"):
            sample_fraction(bad)


class Documents:
    """An in-memory document store: just what drill records use."""

    def __init__(self, allow_delete: bool = True) -> None:
        self.docs: dict[str, bytes] = {}
        self.allow_delete = allow_delete
        self.damaged: list[str] = []
        self.saved = 0

    async def save_document(self, directory: str, kind: str, payload: bytes) -> str:
        self.saved += 1
        name = f"{directory}/{self.saved:064x}"
        self.docs[name] = payload
        return name

    async def load_document(self, name: str, kind: str) -> bytes:
        return self.docs[name]

    async def list_names(self, prefix: str) -> list[str]:
        return [n for n in self.docs if n.startswith(prefix)]

    async def delete_document(self, name: str) -> None:
        if not self.allow_delete:
            from bbackup.errors import AccessDenied

            raise AccessDenied()
        del self.docs[name]

    def note_damage(self, name: str, problem: str) -> None:
        self.damaged.append(name)

    async def document_mtime(self, name: str) -> float:
        return 0.0


@pytest.mark.parametrize("allow_delete", [True, False])
def test_merged_records_keep_every_proof(allow_delete: bool) -> None:
    store = Documents(allow_delete)
    packs = {f"{p:064x}": 10 for p in range(MERGE_ABOVE + 5)}

    async def drills() -> dict[str, DrillRecord]:
        for p in range(MERGE_ABOVE + 5):
            existing = await load_drill_records(store)  # type: ignore[arg-type]
            record = DrillRecord({f"{p:064x}": 1000.0 + p}, time=1000.0 + p)
            await save_drill_record(store, record, existing, packs)  # type: ignore[arg-type]
        return await load_drill_records(store)  # type: ignore[arg-type]

    records = asyncio.run(drills())
    assert len(records) <= MERGE_ABOVE
    coverage = coverage_of(records, packs)
    assert coverage.packs_proven == len(packs) and coverage.fraction == 1.0
    assert coverage.proven[f"{3:064x}"] == 1003.0
    assert (len(store.docs) <= MERGE_ABOVE + 1) == allow_delete


def test_a_record_reads_back_and_garbage_is_an_integrity_error() -> None:
    record = DrillRecord({"ab" * 32: 5.0}, time=7.0, snapshot_id="s", ok=False, failed=("/a",))
    assert DrillRecord.from_bytes(record.to_bytes()) == record
    from bbackup.errors import IntegrityError

    with pytest.raises(IntegrityError):
        DrillRecord.from_bytes(b"\x93\x01\x02\x03")


def test_the_scratch_directory_goes_on_an_error_and_after_a_killed_drill(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), scratch_directory(tmp_path) as scratch:
        (scratch / "ro").mkdir()
        (scratch / "ro" / "file").write_text("x")
        (scratch / "ro").chmod(0o500)  # as a restored read-only directory
        raise RuntimeError
    assert list(tmp_path.iterdir()) == []
    dead = subprocess.Popen([sys.executable, "-c", ""])  # a process ID nobody holds now
    dead.wait()
    abandoned = tmp_path / f"{SCRATCH_PREFIX}{dead.pid}-xyz"
    alive = tmp_path / f"{SCRATCH_PREFIX}{os.getppid()}-abc"
    abandoned.mkdir()
    alive.mkdir()
    prepare_scratch_root(tmp_path)
    assert list(tmp_path.iterdir()) == [alive]
