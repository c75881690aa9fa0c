"""The outcome tags of a seal worker's reply (`ops/seal_worker.py`), one per file of a
batch; the framing is `ops/worker_protocol.py`'s.
"""

from __future__ import annotations

#: Outcome tags: sealed (blob ID, length, sealed bytes, changed while read), empty,
#: an error (errno, message), or too large for one chunk (the backup reads it itself).
SEALED, EMPTY, FAILED, LARGE = 0, 1, 2, 3

__all__ = ["EMPTY", "FAILED", "LARGE", "SEALED"]
