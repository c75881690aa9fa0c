"""Test-wide fixtures: an isolated environment for every test, and a local S3 endpoint."""

from __future__ import annotations

import functools
import os
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.loaders
import botocore.session
import pytest
import typer
import typer.main
import typer.testing

import bbackup.crypto.keys
from bbackup.crypto.kdf import ARGON2_LANES, ARGON2_MEMORY_KIB, Argon2idParams
from bbackup.crypto.keys import KDF_TARGET_SECONDS
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
    yield home


#: What keys made by tests cost: under a millisecond to derive, far below what `init`
#: allows (`--kdf-memory`, `--kdf-time`). Tests that run bbackup in a subprocess ask for
#: the cheapest key `init` allows instead (`cli_harness.CHEAPEST_KDF`).
TEST_KDF = Argon2idParams(t=1, m=8 * ARGON2_LANES)


@pytest.fixture(autouse=True)
def cheap_key_derivation(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keys made in-process by tests skip the calibration to 0.5 s of CPU time, which would
    dominate a suite that creates and opens repositories hundreds of times. The parameters
    are stored in each key file, so this changes only what keys created by tests cost.
    `calibrate_kdf` itself still works (its own test imported it before this runs)."""

    def calibrate_kdf(
        target_seconds: float = KDF_TARGET_SECONDS, memory_kib: int = ARGON2_MEMORY_KIB
    ) -> Argon2idParams:
        return TEST_KDF

    monkeypatch.setattr(bbackup.crypto.keys, "calibrate_kdf", calibrate_kdf)


@pytest.fixture(scope="session", autouse=True)
def botocore_models_parsed_once() -> Iterator[None]:
    """Every S3 repository that bbackup opens in this process shares one botocore data
    loader, as the clients of one long-lived process would, instead of parsing the S3
    service model and endpoint JSON again (about 0.25 s of CPU for each in-process command
    on S3). Loaded models are read-only to botocore, which already shares them between
    the clients of one session; bbackup run in a subprocess is untouched."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            botocore.session, "create_loader", functools.cache(botocore.loaders.create_loader)
        )
        yield


@pytest.fixture(scope="session", autouse=True)
def cli_commands_built_once() -> Iterator[None]:
    """typer's test runner turns the application into click commands on every `invoke`
    (about 50 ms of CPU for bbackup's ninety commands, thousands of times in a run); build
    them once per application object. The commands hold no per-run state: click makes a
    new context for each run, and the callbacks are bbackup's own functions."""
    built: weakref.WeakKeyDictionary[typer.Typer, Any] = weakref.WeakKeyDictionary()
    get_command = typer.main.get_command

    def get_command_once(application: typer.Typer) -> Any:
        if application not in built:
            built[application] = get_command(application)
        return built[application]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(typer.testing, "_get_command", get_command_once)
        yield


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
