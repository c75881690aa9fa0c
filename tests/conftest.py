"""Test-wide fixtures: an isolated environment for every test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

_ISOLATED_PREFIXES = ("AWS_", "BBACKUP_", "XDG_")


@pytest.fixture(autouse=True)
def isolated_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
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
