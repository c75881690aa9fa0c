"""The backends the conformance suite runs against."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from bbackup.storage import Storage
from bbackup.storage.local import LocalStorage
from bbackup.storage.memory import MemoryStorage


@pytest.fixture(params=["local", "memory"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    backend: Storage
    if request.param == "local":
        backend = LocalStorage(tmp_path / "repo")
    else:
        backend = MemoryStorage()
    try:
        yield backend
    finally:
        asyncio.run(backend.aclose())
