"""The allocator tuning (`cli/allocator.py`): with it, a buffer of 2 MiB or more is
mapped (and unmapped at once when freed) even after glibc would have raised its mmap
threshold; BBACKUP_NO_MALLOC_TUNING=1, or glibc's own variable, leaves glibc's default."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys

import pytest

PROBE = """
import ctypes, sys
class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd",
        "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
from bbackup.cli.allocator import tune_allocator
tune_allocator("backup")
big = bytearray(8 * 1024 * 1024)  # mapped; freeing it raises glibc's own threshold
del big
before = libc.mallinfo2().hblkhd
buffer = bytearray(3 * 1024 * 1024)
print(libc.mallinfo2().hblkhd - before)
"""

try:
    ctypes.CDLL(None).mallinfo2  # noqa: B018 (glibc 2.33 and later)
except (OSError, AttributeError):
    pytest.skip("needs glibc's mallinfo2 to see where memory comes from", allow_module_level=True)


def run_probe(probe: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run `probe` in a fresh interpreter with `env` and no inherited MALLOC_ settings."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    return subprocess.run(
        [sys.executable, "-c", probe],
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )


def mapped_bytes_of_a_3_mib_buffer(**env: str) -> int:
    return int(run_probe(PROBE, **env).stdout)


def test_large_buffers_are_mapped_after_a_large_free() -> None:
    assert mapped_bytes_of_a_3_mib_buffer() >= 3 * 1024 * 1024


@pytest.mark.parametrize(
    "env",
    [{"BBACKUP_NO_MALLOC_TUNING": "1"}, {"MALLOC_MMAP_THRESHOLD_": str(4 * 1024 * 1024)}],
)
def test_the_tuning_is_left_out_when_switched_off(env: dict[str, str]) -> None:
    assert mapped_bytes_of_a_3_mib_buffer(**env) == 0


ARENA_PROBE = """
import ctypes, threading
from bbackup.cli.allocator import tune_allocator
tune_allocator("restore")
held = []
barrier = threading.Barrier(8)
def work():
    held.append(bytearray(100_000))  # from malloc, not Python's small-object allocator
    barrier.wait()  # all eight threads alive at once
threads = [threading.Thread(target=work) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
ctypes.CDLL(None).malloc_stats()  # one "Arena N:" block per heap, on stderr
"""


def heaps_after_eight_threads(**env: str) -> int:
    stderr = run_probe(ARENA_PROBE, **env).stderr
    return sum(line.startswith("Arena ") for line in stderr.splitlines())


def test_threads_share_two_heaps() -> None:
    """Eight threads allocating at once get two heaps between them, not one each (each
    heap keeps what its threads freed: the restore's peak was 15 MiB higher)."""
    assert heaps_after_eight_threads() == 2
    assert heaps_after_eight_threads(BBACKUP_NO_MALLOC_TUNING="1") > 2
    assert heaps_after_eight_threads(MALLOC_ARENA_MAX="3") == 3
