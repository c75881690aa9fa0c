"""A repository in memory for running jobs in-process, opened as a JobRunner opens one."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from bbackup.repository import Repository, RepositoryConfig, init_repository, open_repository
from bbackup.service.config import RepositorySettings
from bbackup.storage import StorageOptions, open_storage
from bbackup.storage.memory import MemoryStorage

PASSWORD = "pw"


@dataclass
class MemoryRepository:
    backend: MemoryStorage

    @contextlib.asynccontextmanager
    async def open(self, settings: RepositorySettings | None = None) -> AsyncIterator[Repository]:
        """Open it as a job's run does (the RepositoryOpener role)."""
        stack = open_storage("memory:", StorageOptions(memory_backend=self.backend))
        try:
            yield await open_repository(stack, PASSWORD, use_cache=False, load_index=False)
        finally:
            await stack.storage.aclose()


def new_memory_repository() -> MemoryRepository:
    backend = MemoryStorage()
    stack = open_storage("memory:", StorageOptions(memory_backend=backend))
    asyncio.run(init_repository(stack, PASSWORD, RepositoryConfig()))
    return MemoryRepository(backend)
