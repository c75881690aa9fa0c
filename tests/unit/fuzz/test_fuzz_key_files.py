"""Fuzzing key files, the one object stored without encryption: whatever the store holds,
opening it gives the master key it wraps, WrongPassword or IntegrityError, never another
key, another exception or a derivation without end.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from typing import Any

import msgpack
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from fuzz_strategies import (
    EDGE_INTEGERS,
    arbitrary_bytes,
    msgpack_values,
    mutated,
    pack_value,
    reshaped,
)
from hypothesis import given
from hypothesis import strategies as st
from valid_objects import CHEAP_KDFS, MASTER

from bbackup.crypto.kdf import WRAP_AD, derive_ahead
from bbackup.crypto.keys import MasterKey, describe_key_file, open_key_file, seal_key_file
from bbackup.errors import IntegrityError, WrongPassword

PASSWORD = "correct horse"
KEY_FILES = [seal_key_file(MASTER, PASSWORD, params, hostname="h") for params in CHEAP_KDFS]

#: JSON values for reshaping a key file, without the integers that would make a derivation
#: valid but slow (up to 1000 passes over 2 GiB is allowed): small, or out of range.
key_file_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**70), 64),
        st.integers(2**21 + 1, 2**80),
        EDGE_INTEGERS.filter(lambda n: n <= 64 or n > 2**21),
        st.floats(),
        st.text(max_size=20),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


def reshaped_key_files() -> st.SearchStrategy[bytes]:
    return st.sampled_from(KEY_FILES).flatmap(
        lambda f: reshaped(json.loads(f), key_file_values).map(lambda d: json.dumps(d).encode())
    )


def opened_master_or_none(stored: bytes) -> MasterKey | None:
    try:
        return open_key_file(stored, PASSWORD)
    except (IntegrityError, WrongPassword):
        return None


@given(arbitrary_bytes)
def test_key_file_reader_rejects_arbitrary_bytes_with_integrity_error_or_wrong_password(
    stored: bytes,
) -> None:
    with pytest.raises((IntegrityError, WrongPassword)):
        open_key_file(stored, PASSWORD)
    listed = describe_key_file_or_none(stored)
    assert listed is None or isinstance(listed, dict)


@given(st.one_of(st.sampled_from(KEY_FILES).flatmap(mutated), reshaped_key_files()))
def test_damaged_key_file_opens_to_the_same_master_key_or_fails_cleanly(stored: bytes) -> None:
    # Its unauthenticated fields (hostname, created) may change without harm; anything else
    # changes the derived key or the box, and the password no longer opens it.
    assert opened_master_or_none(stored) in (MASTER, None)
    listed = describe_key_file_or_none(stored)
    assert listed is None or isinstance(listed, dict)


def describe_key_file_or_none(stored: bytes) -> dict[str, Any] | None:
    try:
        return describe_key_file(stored)
    except IntegrityError:
        return None


def key_file_wrapping(plaintext: bytes) -> bytes:
    """A key file whose box opens with PASSWORD and holds `plaintext` as the master key."""
    params = CHEAP_KDFS[0]
    salt = secrets.token_bytes(32)
    nonce = secrets.token_bytes(12)
    box = AESGCM(params.derive(PASSWORD.encode(), salt)).encrypt(nonce, plaintext, WRAP_AD)
    document = json.loads(KEY_FILES[0]) | {
        "salt": base64.b64encode(salt).decode(),
        "data": base64.b64encode(nonce + box).decode(),
    }
    return json.dumps(document).encode()


valid_master_payload = MASTER.to_bytes()


@given(
    st.one_of(
        arbitrary_bytes,
        st.just(valid_master_payload).flatmap(mutated),
        reshaped(msgpack.unpackb(valid_master_payload)).map(pack_value),
        msgpack_values.map(pack_value),
    )
)
def test_key_file_with_a_malformed_master_key_inside_a_valid_box_gives_integrity_error(
    plaintext: bytes,
) -> None:
    try:
        master = open_key_file(key_file_wrapping(plaintext), PASSWORD)
    except IntegrityError:
        return
    assert len(master.encryption_key) == len(master.id_key) == 32
    assert 0 <= master.chunker_seed < 2**62


@given(arbitrary_bytes)
def test_deriving_ahead_from_arbitrary_key_files_never_raises(stored: bytes) -> None:
    derive_ahead([stored], PASSWORD)


@pytest.mark.parametrize(
    "params",
    [
        {"kdf": "argon2id", "t": 1, "m": 4 * 1024 * 1024, "p": 4},  # 4 GiB of memory
        {"kdf": "argon2id", "t": 10**9, "m": 64 * 1024, "p": 4},  # a billion passes
        {"kdf": "argon2id", "t": 1, "m": 32, "p": 0},
        {"kdf": "argon2id", "t": 1, "m": 8, "p": 4},  # less than 8 KiB per lane
        {"kdf": "scrypt", "n": 2**30, "r": 8, "p": 1},  # 1 TiB of memory
        {"kdf": "scrypt", "n": 2**24, "r": 64, "p": 1},  # 128 GiB: each bound alone allows it
        {"kdf": "scrypt", "n": 2**14, "r": 8, "p": 2**20},  # a million times the work
        {"kdf": "scrypt", "n": 1000, "r": 8, "p": 1},  # n not a power of two
    ],
    ids=[
        *("argon2-memory", "argon2-passes", "argon2-no-lanes", "argon2-small-memory"),
        *("scrypt-memory", "scrypt-memory-n-times-r", "scrypt-work", "scrypt-n"),
    ],
)
def test_key_file_asking_for_an_unbounded_or_invalid_derivation_is_refused_at_once(
    params: dict[str, Any],
) -> None:
    document = {
        k: v for k, v in json.loads(KEY_FILES[0]).items() if k not in ("t", "m", "p")
    } | params
    started = time.monotonic()
    with pytest.raises(IntegrityError, match="out of range"):
        open_key_file(json.dumps(document).encode(), PASSWORD)
    assert time.monotonic() - started < 1.0
