"""The garbage-collector policy of long tree walks (backup, check, prune): cycles made
during a walk are still freed (by the sweeps), and the collector is left as it was found,
even after a failure (the service runs one backup after another in one process)."""

from __future__ import annotations

import gc
import weakref

import pytest

from bbackup.ops.walk_gc import WalkCollection


class _Cyclic:
    def __init__(self) -> None:
        self.me = self


def test_a_cycle_made_during_the_walk_is_freed_by_the_next_sweep() -> None:
    with WalkCollection(sweep_entries=1000) as collection:
        ref = weakref.ref(_Cyclic())
        collection.walked(999)
        assert ref() is not None  # automatic collection is off during the walk
        collection.walked(1)
        assert ref() is None


def test_the_collector_is_restored_after_a_failed_walk() -> None:
    assert gc.isenabled()
    frozen_before = gc.get_freeze_count()
    with pytest.raises(OSError), WalkCollection():
        assert not gc.isenabled()
        raise OSError("the walk failed")
    assert gc.isenabled()
    assert gc.get_freeze_count() == frozen_before


def test_a_walk_inside_another_freeze_leaves_it_frozen() -> None:
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with WalkCollection():
            pass
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()
