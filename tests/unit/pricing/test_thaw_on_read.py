"""The thaw a read starts when it meets an archived pack: readers that meet archived packs
at once share one thaw of every pack the command reads, and a pack still archived after
it is thawed on its own."""

from __future__ import annotations

import asyncio

from bbackup.ops.thaw import ThawOnArchivedRead


def test_concurrent_archived_reads_share_one_thaw_of_every_needed_pack() -> None:
    thaws: list[set[str]] = []

    async def thaw(names: set[str]) -> None:
        thaws.append(set(names))
        await asyncio.sleep(0.01)  # the wait: the other readers meet archived packs meanwhile

    async def main() -> None:
        handler = ThawOnArchivedRead(["data/a", "data/b", "data/c"], thaw)
        await asyncio.gather(*(handler(name) for name in ("data/a", "data/b", "data/c")))
        assert thaws == [{"data/a", "data/b", "data/c"}]
        # Archived again after its thaw (its restored copy expired): that pack alone.
        await handler("data/b")
        assert thaws[1:] == [{"data/b"}]

    asyncio.run(main())


def test_a_pack_outside_the_needed_ones_is_thawed_with_them() -> None:
    thaws: list[set[str]] = []

    async def thaw(names: set[str]) -> None:
        thaws.append(set(names))

    asyncio.run(ThawOnArchivedRead(["data/a"], thaw)("data/z"))
    assert thaws == [{"data/a", "data/z"}]
