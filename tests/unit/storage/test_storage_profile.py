"""What kind of store a repository is in comes from one profile, built with the storage
stack from the URL: the defaults, the read and write strategy and what the store supports
follow from it, and `init` creates the bucket through the stack."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bbackup.storage import ObjectInfo, Storage, StorageOptions, StorageWrapper, open_storage
from s3_server import MotoEndpoint, S3Bucket


@pytest.mark.parametrize("spelling", ["{dir}", "file://{dir}"])
def test_a_directory_is_a_local_store(tmp_path: Path, spelling: str) -> None:
    profile = open_storage(spelling.format(dir=tmp_path / "repo")).profile

    assert not profile.remote
    assert (profile.default_connections, profile.upload_slots) == (4, 2)
    assert profile.read_size is not None and profile.read_size < 2 * 1024 * 1024
    assert profile.range_gap == 1024 * 1024
    assert not (profile.storage_classes or profile.restore_requests or profile.object_lock)
    assert profile.conditional_writes


def test_an_s3_url_is_a_remote_store_with_tiers_and_object_lock() -> None:
    profile = open_storage("s3://bucket/prefix").profile

    assert profile.remote
    # 16 requests in flight, but only 4 pack uploads: each holds a pack in memory.
    assert (profile.default_connections, profile.upload_slots) == (16, 4)
    assert profile.read_size is None and profile.range_gap is None  # whole runs, one chunk
    assert profile.storage_classes and profile.restore_requests and profile.object_lock
    assert profile.conditional_writes


def test_the_memory_store_is_local() -> None:
    assert not open_storage("memory:").profile.remote


class ConcurrencyProbe(StorageWrapper):
    """Counts the calls in flight below the limiter, and the most at once."""

    def __init__(self, inner: Storage) -> None:
        super().__init__(inner)
        self.in_flight = 0
        self.most = 0

    async def stat(self, name: str) -> ObjectInfo:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            await asyncio.sleep(0.01)
            return ObjectInfo(name, 0)
        finally:
            self.in_flight -= 1


@pytest.mark.parametrize(("connections", "most"), [(None, 4), (7, 7)])
def test_the_profile_bounds_the_calls_in_flight_unless_connections_are_given(
    tmp_path: Path, connections: int | None, most: int
) -> None:
    probes: list[ConcurrencyProbe] = []

    def probe(backend: Storage) -> Storage:
        probes.append(ConcurrencyProbe(backend))
        return probes[-1]

    stack = open_storage(str(tmp_path), StorageOptions(connections=connections, wrap_backend=probe))

    async def many() -> None:
        await asyncio.gather(*(stack.storage.stat(f"o{i}") for i in range(20)))

    asyncio.run(many())
    assert probes[0].most == most


def test_creating_the_container_of_a_directory_creates_nothing(tmp_path: Path) -> None:
    stack = open_storage(str(tmp_path / "repo"))

    asyncio.run(stack.create_container())

    assert not (tmp_path / "repo").exists()  # the first put creates it


@pytest.mark.s3
def test_creating_the_container_of_an_s3_repository_creates_a_missing_bucket(
    s3_bucket: S3Bucket, moto_endpoint: MotoEndpoint
) -> None:
    fresh = f"{s3_bucket.bucket}-new"

    async def create_twice() -> None:
        stack = open_storage(f"s3://{fresh}/repo")
        try:
            await stack.create_container()
            await stack.create_container()  # already there: nothing to do
        finally:
            await stack.storage.aclose()

    try:
        asyncio.run(create_twice())
        buckets = [b["Name"] for b in s3_bucket.client.list_buckets()["Buckets"]]
        assert fresh in buckets
    finally:
        moto_endpoint.remove_bucket(fresh)
