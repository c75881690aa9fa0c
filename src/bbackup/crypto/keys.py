"""The master key and password-wrapped key files (Argon2id KDF, AES-256-GCM wrapping)."""

from __future__ import annotations

import base64
import json
import math
import os
import secrets
import time
from dataclasses import dataclass
from typing import Any

import msgpack
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bbackup.crypto.kdf import (
    ARGON2_LANES,
    WRAP_AD,
    Argon2idParams,
    KdfParams,
    UnsupportedKdf,
    params_from,
)
from bbackup.errors import IntegrityError, WrongPassword

KEY_FILE_VERSION = 1
#: Key derivation should cost at least this much CPU time, so guessing passwords is slow.
KDF_TARGET_SECONDS = 0.5


@dataclass(frozen=True, slots=True)
class MasterKey:
    """The repository's secrets; never stored unwrapped."""

    encryption_key: bytes
    id_key: bytes
    chunker_seed: int

    @classmethod
    def generate(cls) -> MasterKey:
        # 62 bits: pyfastcdc shifts the seed left by one inside a uint64.
        return cls(secrets.token_bytes(32), secrets.token_bytes(32), secrets.randbits(62))

    def to_bytes(self) -> bytes:
        packed: bytes = msgpack.packb(
            {"enc": self.encryption_key, "id": self.id_key, "seed": self.chunker_seed}
        )
        return packed

    @classmethod
    def from_bytes(cls, data: bytes) -> MasterKey:
        raw = msgpack.unpackb(data)
        return cls(bytes(raw["enc"]), bytes(raw["id"]), int(raw["seed"]))


def _cpu_seconds(params: KdfParams, salt: bytes) -> float:
    """CPU time (all threads) of one derivation: the cost of one password guess."""
    start = time.process_time()
    params.derive(b"calibration", salt)
    return time.process_time() - start


def calibrate_kdf(target_seconds: float = KDF_TARGET_SECONDS) -> Argon2idParams:
    """Argon2id parameters whose derivation costs at least `target_seconds` of CPU time.

    Memory is fixed at 64 MiB and the lanes at 4 (RFC 9106's second recommended option);
    the passes `t` are raised until one derivation takes `target_seconds` of CPU time on
    this machine. The cost is counted in CPU time, not wall time, because that is what
    each password guess costs an attacker; the lanes run in parallel, so on a machine
    with several cores opening the repository takes a fraction of it (about half on two
    cores). restic and bbackup before argon2id spent the same time on one core (scrypt).
    """
    if os.environ.get("BBACKUP_TEST_FAST_KDF") == "1":
        return Argon2idParams(t=1, m=8 * ARGON2_LANES)
    salt = secrets.token_bytes(16)

    def fastest(t: int, runs: int = 2) -> float:
        # The fastest run: the machine at its quickest, when a guess is cheapest.
        return min(_cpu_seconds(Argon2idParams(t=t), salt) for _ in range(runs))

    one, three = fastest(1), fastest(3)
    per_pass = max((three - one) / 2, 1e-4)
    fixed = max(one - per_pass, 0.0)
    want = 1.1 * target_seconds  # headroom: runs on one machine vary by 10-20 %
    t = max(3, math.ceil((want - fixed) / per_pass))
    # Short runs mispredict long ones: check at full length, and only ever go up.
    spent = fastest(t)
    if spent < want:
        t = math.ceil(t * want / max(spent, 1e-4))
    return Argon2idParams(t=min(t, 1000))


def seal_key_file(
    master: MasterKey,
    password: str,
    params: KdfParams,
    *,
    hostname: str = "",
    username: str = "",
) -> bytes:
    """Wrap the master key under `password`; the result is the key file's stored bytes."""
    salt = secrets.token_bytes(32)
    wrapping_key = params.derive(password.encode(), salt)
    nonce = secrets.token_bytes(12)
    sealed = AESGCM(wrapping_key).encrypt(nonce, master.to_bytes(), WRAP_AD)
    document: dict[str, Any] = {
        "version": KEY_FILE_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "hostname": hostname,
        "username": username,
        **params.fields(),
        "salt": base64.b64encode(salt).decode(),
        "data": base64.b64encode(nonce + sealed).decode(),
    }
    return json.dumps(document, indent=2, sort_keys=True).encode()


def describe_key_file(data: bytes) -> dict[str, Any]:
    """The unencrypted fields of a key file (for `key list`)."""
    try:
        document: dict[str, Any] = json.loads(data)
    except ValueError as exc:
        raise IntegrityError("key file is not valid JSON") from exc
    fields = ("created", "hostname", "username", "kdf", "n", "r", "t", "m", "p")
    return {k: document[k] for k in fields if k in document}


def open_key_file(data: bytes, password: str) -> MasterKey:
    """Unwrap a key file; WrongPassword if the password does not open it.

    If `kdf.derive_ahead` was given the same file and password, the key it derived (or
    is deriving) is taken instead of deriving it a second time.
    """
    try:
        document = json.loads(data)
        if document.get("version") != KEY_FILE_VERSION:
            raise IntegrityError("unsupported key file version")
        params = params_from(document)
        salt = base64.b64decode(document["salt"])
        blob = base64.b64decode(document["data"])
    except UnsupportedKdf as exc:
        raise IntegrityError(str(exc)) from None
    except (ValueError, KeyError, TypeError) as exc:
        raise IntegrityError("key file is malformed") from exc
    wrapping_key = params.derive(password.encode(), salt)
    try:
        plain = AESGCM(wrapping_key).decrypt(blob[:12], blob[12:], WRAP_AD)
    except InvalidTag:
        raise WrongPassword() from None
    return MasterKey.from_bytes(plain)
