"""What passes between the backup and its seal workers (`ops/seal_worker.py`): framed
msgpack messages, both ways a 4-byte big-endian length and then the body, and the tags
of a file's outcome.
"""

from __future__ import annotations

import struct
from typing import IO, Any

import msgpack

#: Outcome tags: sealed (blob ID, length, sealed bytes, changed while read), empty,
#: an error (errno, message), or too large for one chunk (the backup reads it itself).
SEALED, EMPTY, FAILED, LARGE = 0, 1, 2, 3
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
    stream.write(_LENGTH.pack(len(body)) + body)
    stream.flush()


__all__ = ["EMPTY", "FAILED", "LARGE", "SEALED", "read_message", "write_message"]
