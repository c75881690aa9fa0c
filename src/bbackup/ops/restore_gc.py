"""The restore's one speed trick with the cyclic garbage collector: it is paused while the
snapshot's trees are walked and the restore is planned, and what the plan holds is kept out
of the full collections of the rest of the restore.

Why: planning makes several objects per file (nodes, their lists, the file's and blobs'
records), none of them in a reference cycle, so reference counting frees them all. Each
allocation burst still triggers collections, and every full one walks every object made so
far: with 30,000 files 5-6 full collections took 0.5-2 s of a restore's 8 s of CPU.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collection_paused() -> Iterator[None]:
    """No cyclic collection inside (what is made there is freed by reference counting);
    nested or overlapping uses leave it to the outermost to resume."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class PlanCollection:
    """Holds the collector for one restore: paused from `__enter__` until `planned`, which
    moves everything made so far out of later collections (gc.freeze) until `__exit__`.
    A restore planned window by window pauses it again (`planning`) for each window."""

    def __init__(self) -> None:
        self._was_enabled = False
        self._frozen = False

    def __enter__(self) -> PlanCollection:
        self._was_enabled = gc.isenabled()
        gc.disable()
        return self

    def planning(self) -> None:
        """Another window of the plan is being built: pause again."""
        gc.disable()

    def planned(self) -> None:
        """The plan (or its window) is built: collect again, but not through what it
        holds (objects freed later are freed all the same: by reference counting)."""
        if self._was_enabled:
            gc.freeze()
            self._frozen = True
            gc.enable()

    def __exit__(self, *exc: object) -> None:
        if self._frozen:
            gc.unfreeze()
        if self._was_enabled:
            gc.enable()
