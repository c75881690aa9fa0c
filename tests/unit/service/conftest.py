"""Fixtures for running jobs in-process."""

from __future__ import annotations

import pytest
from memory_repository import MemoryRepository, new_memory_repository


@pytest.fixture
def memory_repository() -> MemoryRepository:
    """An initialised repository in memory."""
    return new_memory_repository()
