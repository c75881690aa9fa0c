"""A repository read --as-of a moment (`storage.versioned`): listings come from the
object versions, except lock documents, which are live coordination."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from bbackup.storage import ObjectVersion
from bbackup.storage.memory import MemoryStorage
from bbackup.storage.versioned import VersionedView


class _History:
    """Versions of a few objects, as a versioned bucket lists them (only what the view
    reads: `list_versions`)."""

    def __init__(self, versions: list[ObjectVersion]) -> None:
        self.versions = versions

    async def list_versions(self, prefix: str) -> AsyncIterator[ObjectVersion]:
        for version in self.versions:
            if version.name.startswith(prefix):
                yield version


def test_a_span_read_as_of_a_moment_has_old_keys_and_the_live_locks() -> None:
    live = MemoryStorage()
    old_key = ObjectVersion("keys/k1", "v1", 100.0, 1, is_latest=False)
    new_key = ObjectVersion("keys/k2", "v2", 300.0, 1, is_latest=True)
    view = VersionedView(live, _History([old_key, new_key]), as_of=200.0)  # type: ignore[arg-type]

    async def go() -> list[str]:
        await live.put("locks/now", b"lock")
        return [i.name async for i in view.list("", after="keys", before="locks0")]

    # Lock documents are coordination, not history: the ones held now.
    assert asyncio.run(go()) == ["keys/k1", "locks/now"]
