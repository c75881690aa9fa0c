"""The master key and password-wrapped key files (scrypt KDF, AES-256-GCM wrapping)."""

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
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from bbackup.errors import IntegrityError, WrongPassword

KEY_FILE_VERSION = 1
_WRAP_AD = b"bbackup key file v1"
#: Key derivation should cost at least this long, so guessing passwords is slow.
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


@dataclass(frozen=True, slots=True)
class KdfParams:
    """scrypt cost parameters, stored in each key file."""

    n: int = 2**15
    r: int = 8
    p: int = 1

    def derive(self, password: bytes, salt: bytes) -> bytes:
        kdf = Scrypt(salt=salt, length=32, n=self.n, r=self.r, p=self.p)
        return kdf.derive(password)


def calibrate_kdf(target_seconds: float = KDF_TARGET_SECONDS) -> KdfParams:
    """scrypt parameters that cost at least `target_seconds` on this machine.

    Memory is capped at 32 MiB (N = 2^15, r = 8), as restic caps its own at 60 MiB, so
    opening a repository does not dominate a small backup's memory; the time cost is
    reached by raising the parallelism factor p, which scrypt computes sequentially.
    """
    if os.environ.get("BBACKUP_TEST_FAST_KDF") == "1":
        return KdfParams(n=2**10)
    n = 2**15
    salt = secrets.token_bytes(16)
    timings = []
    for _ in range(3):  # the first run pays for page faults; trust the fastest
        start = time.perf_counter()
        KdfParams(n=n).derive(b"calibration", salt)
        timings.append(time.perf_counter() - start)
    # 20% headroom: the fastest of three runs underestimates a long derivation.
    p = max(1, math.ceil(1.2 * target_seconds / max(min(timings), 1e-4)))
    return KdfParams(n=n, p=min(p, 64))


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
    sealed = AESGCM(wrapping_key).encrypt(nonce, master.to_bytes(), _WRAP_AD)
    document: dict[str, Any] = {
        "version": KEY_FILE_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "hostname": hostname,
        "username": username,
        "kdf": "scrypt",
        "n": params.n,
        "r": params.r,
        "p": params.p,
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
    return {k: document.get(k) for k in ("created", "hostname", "username", "kdf", "n", "r", "p")}


def open_key_file(data: bytes, password: str) -> MasterKey:
    """Unwrap a key file; WrongPassword if the password does not open it."""
    try:
        document = json.loads(data)
        if document.get("version") != KEY_FILE_VERSION or document.get("kdf") != "scrypt":
            raise IntegrityError("unsupported key file version or KDF")
        params = KdfParams(int(document["n"]), int(document["r"]), int(document["p"]))
        salt = base64.b64decode(document["salt"])
        blob = base64.b64decode(document["data"])
    except (ValueError, KeyError, TypeError) as exc:
        raise IntegrityError("key file is malformed") from exc
    wrapping_key = params.derive(password.encode(), salt)
    try:
        plain = AESGCM(wrapping_key).decrypt(blob[:12], blob[12:], _WRAP_AD)
    except InvalidTag:
        raise WrongPassword() from None
    return MasterKey.from_bytes(plain)
