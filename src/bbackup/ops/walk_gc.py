"""The cyclic garbage collector's policy for a walk of many trees (backup, check, prune,
ls, find, diff, stats): automatic collection is off while the walk runs, and what the process held
before it (the modules, the index) is kept out of collections; a full collection runs
every `SWEEP_ENTRIES` entries instead.

Why: a walk makes several objects per entry (its node, the parent's node, their lists,
a record per file read), none of them in a reference cycle, so reference counting frees
them. Each allocation burst still triggered collections, whose full passes grow with what
is alive: 6-10 % of the CPU of a backup of 100,000 small files; at 1,000,000 files an
unchanged backup took 84 s of CPU with them and 45 s without, and `check` 20 s against
15 (docs/bench/session10.md). With collection off, a 100,000-file backup leaves ~1,600
objects in cycles, mostly from imports: the sweeps keep even a walk of many millions of
entries bounded.
"""

from __future__ import annotations

import gc
from collections.abc import Awaitable, Callable

from bbackup.snapshot.model import Tree

#: Loads the tree blob with this ID (`snapshot.store.load_tree` bound to a repository).
TreeLoader = Callable[[bytes], Awaitable[Tree]]

#: Entries walked between two full collections.
SWEEP_ENTRIES = 250_000


class WalkCollection:
    """Holds the collector for one walk: `__enter__` freezes what exists and turns
    automatic collection off, `walked` counts entries and sweeps every `SWEEP_ENTRIES`,
    `__exit__` puts both back as they were."""

    def __init__(self, sweep_entries: int = SWEEP_ENTRIES) -> None:
        self._sweep_entries = sweep_entries
        self._since_sweep = 0
        self._was_enabled = False
        self._freezing = False

    def __enter__(self) -> WalkCollection:
        self._was_enabled = gc.isenabled()
        gc.disable()
        # Inside another freeze (a restore's, in a process that runs both), that one's
        # exit unfreezes: unfreezing here would undo it early.
        self._freezing = gc.get_freeze_count() == 0
        if self._freezing:
            gc.freeze()
        return self

    def walked(self, entries: int) -> None:
        """`entries` more were walked; a full collection of what the walk made once enough
        were."""
        self._since_sweep += entries
        if self._since_sweep >= self._sweep_entries:
            self._since_sweep = 0
            gc.collect()

    def counting(self, load_tree: TreeLoader) -> TreeLoader:
        """`load_tree`, counting the entries of every tree it loads as walked."""

        async def load(tree_id: bytes) -> Tree:
            tree = await load_tree(tree_id)
            self.walked(len(tree.nodes))
            return tree

        return load

    def __exit__(self, *exc: object) -> None:
        if self._freezing:
            gc.unfreeze()
        if self._was_enabled:
            gc.enable()
