"""What passes between a command and its worker processes (`ops/worker_processes.py`):
framed msgpack messages, both ways a 4-byte big-endian length and then the body; the
keys a worker gets; and how a worker's `main` runs.
"""

from __future__ import annotations

import contextlib
import os
import struct
import sys
from collections.abc import Callable
from typing import IO, Any, NamedTuple, NoReturn

import msgpack


class WorkerKeys(NamedTuple):
    """The master key's secrets a worker needs (a `CipherKeys`): not its chunker seed."""

    encryption_key: bytes
    id_key: bytes


_LENGTH = struct.Struct(">I")


def read_message(stream: IO[bytes]) -> Any:
    """One framed message from `stream`; None at its end."""
    head = stream.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        return None
    (length,) = _LENGTH.unpack(head)
    body = stream.read(length)
    if len(body) < length:
        return None
    return msgpack.unpackb(body)


def write_message(stream: IO[bytes], message: Any) -> None:
    body: bytes = msgpack.packb(message)
    # Two writes rather than one of the two joined: a batch's body is megabytes.
    stream.write(_LENGTH.pack(len(body)))
    stream.write(body)
    stream.flush()


def serve(main: Callable[[], int]) -> NoReturn:
    """Run a worker's `main` and exit with its status; a command that is gone (its pipe
    closed) or that stopped the worker gets no word and no traceback: nobody reads them."""
    with contextlib.suppress(BrokenPipeError, KeyboardInterrupt):
        sys.exit(main())
    with contextlib.suppress(OSError):
        os.close(1)
    sys.exit(0)


__all__ = ["WorkerKeys", "read_message", "serve", "write_message"]
