"""The master key and password-wrapped key files (Argon2id KDF, AES-256-GCM wrapping)."""

from __future__ import annotations

import base64
import json
import math
import secrets
import time
from dataclasses import dataclass
from typing import Any

import msgpack
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bbackup.crypto.kdf import (
    ARGON2_MEMORY_KIB,
    WRAP_AD,
    Argon2idParams,
    KdfParams,
    UnsupportedKdf,
    params_from,
)
from bbackup.errors import IntegrityError, UsageError, WrongPassword

KEY_FILE_VERSION = 1
#: Key derivation should cost at least this much CPU time, so guessing passwords is slow.
KDF_TARGET_SECONDS = 0.5
#: The cheapest key `init` / `key add` / `key passwd` make when asked: 8 MiB and one pass
#: cost ~10 ms of CPU time per password guess, 1/50 of the default (64 MiB, ~0.5 s);
#: below that a key file protects little. The upper limits refuse typing mistakes.
MIN_KDF_MEMORY_MIB = 8
MAX_KDF_MEMORY_MIB = 2048
MIN_KDF_PASSES = 1
MAX_KDF_PASSES = 1000


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
        """The master key from its msgpack bytes; ValueError, KeyError or TypeError if they
        do not hold two 32-byte keys and a 62-bit seed."""
        raw = msgpack.unpackb(data)
        key = cls(raw["enc"], raw["id"], raw["seed"])
        keys_ok = all(type(k) is bytes and len(k) == 32 for k in (key.encryption_key, key.id_key))
        if not keys_ok or type(key.chunker_seed) is not int or not 0 <= key.chunker_seed < 2**62:
            raise ValueError("a master key is two 32-byte keys and a 62-bit seed")
        return key


def _cpu_seconds(params: KdfParams, salt: bytes) -> float:
    """CPU time (all threads) of one derivation: the cost of one password guess."""
    start = time.process_time()
    params.derive(b"calibration", salt)
    return time.process_time() - start


def calibrate_kdf(
    target_seconds: float = KDF_TARGET_SECONDS, memory_kib: int = ARGON2_MEMORY_KIB
) -> Argon2idParams:
    """Argon2id parameters whose derivation costs at least `target_seconds` of CPU time.

    Memory is `memory_kib` (64 MiB unless asked otherwise) and the lanes 4 (RFC 9106's
    second recommended option); the passes `t`, at least 3, are raised until one
    derivation takes `target_seconds` of CPU time on this machine. With more memory than
    64 MiB, one pass may be enough (RFC 9106's first option is 1 pass over 2 GiB). The
    cost is counted in CPU time, not wall time, because that is what each password guess
    costs an attacker; the lanes run in parallel, so on a machine with several cores
    opening the repository takes a fraction of it (about half on two cores). restic and
    bbackup before argon2id spent the same time on one core (scrypt).
    """
    salt = secrets.token_bytes(16)
    want = 1.1 * target_seconds  # headroom: runs on one machine vary by 10-20 %

    def fastest(t: int, runs: int = 2) -> float:
        # The fastest run: the machine at its quickest, when a guess is cheapest.
        return min(_cpu_seconds(Argon2idParams(t=t, m=memory_kib), salt) for _ in range(runs))

    one = fastest(1, runs=1)
    if memory_kib > ARGON2_MEMORY_KIB and one >= want:
        return Argon2idParams(t=1, m=memory_kib)  # and no more passes measured at this size
    one, three = min(one, fastest(1, runs=1)), fastest(3)
    per_pass = max((three - one) / 2, 1e-4)
    fixed = max(one - per_pass, 0.0)
    least = 3 if memory_kib <= ARGON2_MEMORY_KIB else 1
    t = max(least, math.ceil((want - fixed) / per_pass))
    # Short runs mispredict long ones: check at full length, and only ever go up.
    spent = fastest(t)
    if spent < want:
        t = math.ceil(t * want / max(spent, 1e-4))
    return Argon2idParams(t=min(t, MAX_KDF_PASSES), m=memory_kib)


@dataclass(frozen=True, slots=True)
class KdfCost:
    """The Argon2id cost of a new key file, as `init`, `key add` and `key passwd` are
    asked for it: memory in MiB and passes, each None for the default (64 MiB, passes
    calibrated to `KDF_TARGET_SECONDS` of CPU time on this machine). Out of range values
    are a UsageError when it is made, before anything is derived or stored."""

    memory_mib: int | None = None
    passes: int | None = None

    def __post_init__(self) -> None:
        if self.memory_mib is not None and not (
            MIN_KDF_MEMORY_MIB <= self.memory_mib <= MAX_KDF_MEMORY_MIB
        ):
            low, high = MIN_KDF_MEMORY_MIB, MAX_KDF_MEMORY_MIB
            raise UsageError(f"--kdf-memory must be between {low} and {high} (MiB)")
        if self.passes is not None and not MIN_KDF_PASSES <= self.passes <= MAX_KDF_PASSES:
            raise UsageError(
                f"--kdf-time must be between {MIN_KDF_PASSES} and {MAX_KDF_PASSES} (passes)"
            )

    def params(self) -> Argon2idParams:
        """The parameters to seal a key file with (calibrating takes about a second)."""
        memory_kib = ARGON2_MEMORY_KIB if self.memory_mib is None else self.memory_mib * 1024
        if self.passes is None:
            return calibrate_kdf(memory_kib=memory_kib)
        return Argon2idParams(t=self.passes, m=memory_kib)


#: 64 MiB, passes calibrated: what a new key file costs unless asked otherwise.
DEFAULT_KDF = KdfCost()


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
        if not isinstance(document, dict):
            raise ValueError("a key file is a JSON object")
    except (ValueError, RecursionError) as exc:
        raise IntegrityError("key file is not valid JSON") from exc
    fields = ("created", "hostname", "username", "kdf", "n", "r", "t", "m", "p")
    return {k: document[k] for k in fields if k in document}


@dataclass(frozen=True, slots=True)
class KeyFile:
    """A key file's parsed fields: what a password needs to unwrap the master key."""

    params: KdfParams
    salt: bytes
    box: bytes  # nonce ‖ AES-256-GCM ciphertext and tag


def parse_key_file(data: bytes) -> KeyFile:
    """Parse a key file; IntegrityError saying what is wrong if it is not a well-formed one.

    Everything that can be checked without the password is checked here, so a damaged
    key file is told apart from a wrong password (which only the AEAD box can tell)."""
    try:
        document = json.loads(data)
        if not isinstance(document, dict):
            raise IntegrityError("not a key file (JSON object) at all")
        version = document.get("version")
        if version != KEY_FILE_VERSION:
            # No repr of a list or map: JSON nested deep enough makes repr recurse too far.
            shown = type(version).__name__ if isinstance(version, list | dict) else repr(version)
            raise IntegrityError(f"unsupported key file version {shown}")
        params = params_from(document)
        salt = base64.b64decode(document["salt"], validate=True)
        box = base64.b64decode(document["data"], validate=True)
    except UnsupportedKdf as exc:
        raise IntegrityError(str(exc)) from None
    except (ValueError, KeyError, TypeError, RecursionError) as exc:  # binascii.Error: ValueError
        raise IntegrityError("key file is malformed") from exc
    if not _sane(params):
        raise IntegrityError(f"key derivation parameters out of range: {params.fields()}")
    if len(salt) < 16 or len(box) < 12 + 16:
        raise IntegrityError("salt or sealed key too short")
    return KeyFile(params, salt, box)


def _sane(params: KdfParams) -> bool:
    """Parameters this version could have written, and the KDF accepts."""
    if isinstance(params, Argon2idParams):
        return (
            MIN_KDF_PASSES <= params.t <= MAX_KDF_PASSES
            and 1 <= params.p <= 64
            and 8 * params.p <= params.m <= MAX_KDF_MEMORY_MIB * 1024
        )
    n, r, p = params
    memory = 128 * n * r  # more than the machine has is a MemoryError from the KDF
    return (
        2 <= n <= 2**24
        and n & (n - 1) == 0
        and 1 <= r <= 64
        and 1 <= p <= 64
        and memory <= MAX_KDF_MEMORY_MIB * 1024 * 1024
    )


def unwrap_key_file(key_file: KeyFile, password: str) -> MasterKey:
    """The master key a parsed key file wraps; WrongPassword if `password` does not open it.

    If `kdf.derive_ahead` was given the same file and password, the key it derived (or
    is deriving) is taken instead of deriving it a second time.
    """
    wrapping_key = key_file.params.derive(password.encode(), key_file.salt)
    box = key_file.box
    try:
        plain = AESGCM(wrapping_key).decrypt(box[:12], box[12:], WRAP_AD)
    except InvalidTag:
        raise WrongPassword() from None
    try:
        return MasterKey.from_bytes(plain)
    except (ValueError, KeyError, TypeError) as exc:
        raise IntegrityError("key file holds a malformed master key") from exc


def open_key_file(data: bytes, password: str) -> MasterKey:
    """Unwrap a key file: IntegrityError if it is malformed, WrongPassword if the password
    does not open it."""
    return unwrap_key_file(parse_key_file(data), password)
