"""Test-wide fixtures: an isolated environment for every test, and a local S3 endpoint."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from s3_server import TEST_CREDENTIALS, MotoEndpoint, S3Bucket

_ISOLATED_PREFIXES = ("AWS_", "BBACKUP_", "XDG_")


@pytest.fixture(autouse=True)
def isolated_env(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """No test sees the developer's AWS profile, cache, config or password variables."""
    home = tmp_path_factory.mktemp("home")
    for key in list(os.environ):
        if key.startswith(_ISOLATED_PREFIXES):
            monkeypatch.delenv(key)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    # Fast key derivation: scrypt tuned to 0.5 s would dominate a suite that opens
    # repositories hundreds of times. Parameters are stored per key file, so this only
    # changes the cost of keys created by tests.
    monkeypatch.setenv("BBACKUP_TEST_FAST_KDF", "1")
    yield home


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[MotoEndpoint]:
    """One moto S3 server on 127.0.0.1 for the whole session (see tests/s3_server.py)."""
    endpoint = MotoEndpoint()
    try:
        yield endpoint
    finally:
        endpoint.stop()


@pytest.fixture
def s3_bucket(
    isolated_env: Path, moto_endpoint: MotoEndpoint, monkeypatch: pytest.MonkeyPatch
) -> Iterator[S3Bucket]:
    """A fresh, empty bucket, with the environment pointing bbackup at it.

    Depends on isolated_env so the AWS/BBACKUP variables set here are not cleared after.
    """
    for key, value in TEST_CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("BBACKUP_S3_ENDPOINT", moto_endpoint.url)
    name = moto_endpoint.create_bucket()
    try:
        yield S3Bucket(moto_endpoint.url, name, moto_endpoint.client)
    finally:
        moto_endpoint.remove_bucket(name)
