"""Password key derivation for key files, and derivations started ahead of time.

A key file (`keys.py`) names its KDF and parameters (`params_from`); the key derived
from the password and the file's salt unwraps the master key. The derivation is most of
the time a short command takes and depends only on the key file and the password, so
the CLI starts it (`derive_ahead`) before it has loaded, and `derive` takes that result
when its inputs are the same.

This module is deliberately light: cryptography's KDFs and a little of the standard
library, ~15 ms to import where `keys.py` with everything it needs takes ~70 ms that
would otherwise pass before the derivation starts.
"""

from __future__ import annotations

import binascii
import json
import threading
from collections.abc import Sequence
from typing import Any, NamedTuple

from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

ARGON2_MEMORY_KIB = 64 * 1024
ARGON2_LANES = 4
#: Associated data of the AES-256-GCM box that holds the master key in a key file.
WRAP_AD = b"bbackup key file v1"


class ScryptParams(NamedTuple):
    """scrypt cost parameters (key files written before argon2id; still read)."""

    n: int = 2**15
    r: int = 8
    p: int = 1

    def derive(self, password: bytes, salt: bytes) -> bytes:
        ahead = _take_ahead(self, password, salt)
        return ahead if ahead is not None else _scrypt(self, password, salt)

    def fields(self) -> dict[str, Any]:
        return {"kdf": "scrypt", "n": self.n, "r": self.r, "p": self.p}


class Argon2idParams(NamedTuple):
    """Argon2id (RFC 9106) cost parameters: passes, memory in KiB, lanes."""

    t: int = 3
    m: int = ARGON2_MEMORY_KIB
    p: int = ARGON2_LANES

    def derive(self, password: bytes, salt: bytes) -> bytes:
        ahead = _take_ahead(self, password, salt)
        return ahead if ahead is not None else _argon2(self, password, salt)

    def fields(self) -> dict[str, Any]:
        return {"kdf": "argon2id", "t": self.t, "m": self.m, "p": self.p}


KdfParams = ScryptParams | Argon2idParams


class UnsupportedKdf(ValueError):
    """A key file names a key derivation function this version does not know."""


def params_from(document: dict[str, Any]) -> KdfParams:
    """The KDF parameters a key file document names; UnsupportedKdf for an unknown KDF
    (TypeError or KeyError if a parameter is missing or not an integer)."""
    if not isinstance(document, dict):
        raise TypeError("a key file is a JSON object")
    kdf = document.get("kdf")
    if kdf == "argon2id":
        return Argon2idParams(*(_integer(document[k]) for k in ("t", "m", "p")))
    if kdf == "scrypt":
        return ScryptParams(*(_integer(document[k]) for k in ("n", "r", "p")))
    named = repr(kdf) if isinstance(kdf, str) else f"of type {type(kdf).__name__}"
    raise UnsupportedKdf(f"unsupported key derivation function {named}")


def _integer(value: object) -> int:
    # int() would take floats: JSON's 1e400 is inf, and int(inf) an OverflowError.
    if type(value) is not int:
        raise TypeError("KDF parameters are integers")
    return value


def _scrypt(params: ScryptParams, password: bytes, salt: bytes) -> bytes:
    return Scrypt(salt=salt, length=32, n=params.n, r=params.r, p=params.p).derive(password)


def _argon2(params: Argon2idParams, password: bytes, salt: bytes) -> bytes:
    kdf = Argon2id(salt=salt, length=32, iterations=params.t, lanes=params.p, memory_cost=params.m)
    # One at a time: two derivations in parallel deadlock in OpenSSL's thread pool (each
    # holds some of its threads and waits for more), and would not finish sooner than one
    # after the other anyway, since each uses every core.
    with _argon2_lock:
        return kdf.derive(password)


_argon2_lock = threading.Lock()


# ---- ahead of time -------------------------------------------------------------------


class _Ahead:
    """One derivation started ahead: `key` once `done` is set (None: derive it again)."""

    __slots__ = ("done", "key")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.key: bytes | None = None


_Inputs = tuple[type, KdfParams, bytes, bytes]  # KDF, parameters, password, salt
_ahead: dict[_Inputs, _Ahead] = {}
_ahead_lock = threading.Lock()


def derive_ahead(files: Sequence[bytes], password: str) -> threading.Thread | None:
    """Start deriving the keys of the key files `files` (their stored bytes) from
    `password` in a daemon thread, one after another, stopping at the first whose key
    opens its file. A `derive` with the same inputs waits for the result instead of
    deriving again; a guess that turns out wrong costs only CPU time. Files that cannot
    be parsed are skipped: opening them reports the error. Returns the thread, if any."""
    secret = password.encode()
    jobs: list[tuple[_Inputs, _Ahead, bytes]] = []
    for data in files:
        try:
            document = json.loads(data)
            params = params_from(document)
            salt = binascii.a2b_base64(document["salt"])
            box = binascii.a2b_base64(document["data"])
        except (ValueError, KeyError, TypeError, RecursionError):  # binascii.Error: ValueError
            continue
        inputs: _Inputs = (type(params), params, secret, salt)
        with _ahead_lock:
            if inputs not in _ahead:
                job = _ahead[inputs] = _Ahead()
                jobs.append((inputs, job, box))
    if not jobs:
        return None
    thread = threading.Thread(target=_run_ahead, args=(jobs,), name="bb-unlock", daemon=True)
    thread.start()
    return thread


def _run_ahead(jobs: list[tuple[_Inputs, _Ahead, bytes]]) -> None:
    for i, ((_kind, params, secret, salt), job, box) in enumerate(jobs):
        try:
            if isinstance(params, Argon2idParams):
                job.key = _argon2(params, secret, salt)
            else:
                job.key = _scrypt(params, secret, salt)
        except Exception:  # the caller derives again and reports the error
            job.key = None
        finally:
            job.done.set()
        if job.key is not None and _opens(job.key, box):
            for inputs, later, _box in jobs[i + 1 :]:  # not needed: nobody waits for them
                with _ahead_lock:
                    _ahead.pop(inputs, None)
                later.done.set()
            return


def _opens(key: bytes, box: bytes) -> bool:
    # Imported here, in the background, once the derivation is done (not on the way to it).
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    try:
        AESGCM(key).decrypt(box[:12], box[12:], WRAP_AD)
    except (InvalidTag, ValueError):
        return False
    return True


def _take_ahead(params: KdfParams, password: bytes, salt: bytes) -> bytes | None:
    """The key `derive_ahead` made (or is making) from these inputs, once; else None."""
    with _ahead_lock:
        job = _ahead.pop((type(params), params, password, salt), None)
    if job is None:
        return None
    job.done.wait()
    return job.key
