"""Key files: the password KDF that wraps the master key, and files of older versions."""

from __future__ import annotations

import json
import time

import pytest

from bbackup.crypto.kdf import Argon2idParams, ScryptParams
from bbackup.crypto.keys import (
    MasterKey,
    calibrate_kdf,
    describe_key_file,
    open_key_file,
    seal_key_file,
)
from bbackup.errors import IntegrityError, WrongPassword

FAST_ARGON2 = Argon2idParams(t=1, m=32, p=4)


def test_an_argon2id_key_file_opens_with_its_password_only() -> None:
    master = MasterKey.generate()
    stored = seal_key_file(master, "correct horse", FAST_ARGON2, hostname="h", username="u")

    assert open_key_file(stored, "correct horse") == master
    with pytest.raises(WrongPassword):
        open_key_file(stored, "correct horse ")
    assert describe_key_file(stored) | {"created": None} == {
        "created": None,
        "hostname": "h",
        "username": "u",
        "kdf": "argon2id",
        "t": 1,
        "m": 32,
        "p": 4,
    }


def test_a_scrypt_key_file_of_an_earlier_version_still_opens() -> None:
    master = MasterKey.generate()
    stored = seal_key_file(master, "pw", ScryptParams(n=2**10, r=8, p=1))

    document = json.loads(stored)
    assert (document["kdf"], document["n"], document["r"], document["p"]) == ("scrypt", 1024, 8, 1)
    assert open_key_file(stored, "pw") == master
    with pytest.raises(WrongPassword):
        open_key_file(stored, "other")


def test_a_key_file_with_an_unknown_kdf_is_rejected_not_guessed() -> None:
    document = json.loads(seal_key_file(MasterKey.generate(), "pw", FAST_ARGON2))
    document["kdf"] = "pbkdf2"

    with pytest.raises(IntegrityError, match="pbkdf2"):
        open_key_file(json.dumps(document).encode(), "pw")


def test_calibration_reaches_the_cpu_time_it_is_asked_for() -> None:
    # `calibrate_kdf` here is the real one, imported before conftest's
    # `cheap_key_derivation` replaces it in its module for the keys tests create.
    target = 0.15

    params = calibrate_kdf(target)
    start = time.process_time()
    params.derive(b"password", b"salt" * 4)
    spent = time.process_time() - start

    # Headroom is added above the target; allow for a noisy measurement below it.
    assert spent >= 0.8 * target, (params, spent)
    assert (params.m, params.p) == (64 * 1024, 4)
    assert calibrate_kdf(4 * target).t > params.t


def test_calibration_at_less_memory_keeps_that_memory_and_adds_passes() -> None:
    params = calibrate_kdf(0.05, memory_kib=8 * 1024)

    assert (params.m, params.p) == (8 * 1024, 4)
    assert params.t >= 3
