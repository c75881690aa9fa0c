"""What passes between a command and its worker processes (`ops/worker_processes.py`):
framed msgpack messages, both ways a 4-byte big-endian length and then the body.
"""

from __future__ import annotations

import struct
from typing import IO, Any

import msgpack

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


__all__ = ["read_message", "write_message"]
