"""glibc allocator tuning for the commands that move large buffers: the one place that
calls mallopt. Off with BBACKUP_NO_MALLOC_TUNING=1; a single setting is left alone when
the user set its own MALLOC_*_ variable. Elsewhere than glibc this does nothing.

Why, and what it bought (measured on the restore benchmark, docs/bench/history.md):
- M_MMAP_THRESHOLD fixed at 2 MiB, every command: glibc raises its mmap threshold after
  the first large free, up to 32 MiB; from then on every 16 MiB pack buffer is carved
  from per-thread heaps that fragment as buffers move between reader, packer and upload
  threads (restore peak RSS 196 → 128 MiB). A local repository's restore reads stay just
  below this threshold (`storage.factory`, the local profile's read size), so their
  buffers come from the heap and are reused instead of mapped and faulted in again.
- M_TRIM_THRESHOLD at 8 MiB, restore only: the restore frees and allocates a few MiB
  per blob read, decrypted and decompressed, and a page given back (glibc keeps 128 KiB
  by default) is zero-filled and faulted in again on its next use. 8 MiB is as fast as
  64 MiB (stdlib + large files, cold: 2.84-2.86 s against 2.53-2.98 s; 128 KiB: 3.2-3.6 s)
  and holds less: freed heap in the middle of a long restore is kept, not added to, but
  on many small files 64 MiB held 152-153 MiB at the peak, 8 MiB 147-149 (/usr/share).
- M_ARENA_MAX at 2, every command: glibc gives each thread that allocates at once with
  another its own heap (up to 8 per core), and each keeps its freed memory to itself.
  The restore's reader, planner and writer threads held 13-15 MiB more that way than in
  two shared heaps (restore of /usr/share, 46,000 files: peak 165-168 → 151-152 MiB,
  wall time unchanged or lower; first backup 166-167 → 163-165 MiB). The threads spend
  their time in system calls and C code that drops the GIL, rarely in malloc at once.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

#: The switch: set to 1 to leave glibc's allocator at its defaults.
DISABLE_VARIABLE = "BBACKUP_NO_MALLOC_TUNING"

#: glibc's mallopt parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8

MMAP_THRESHOLD = 2 * 1024 * 1024
KEEP_FREED_BYTES = 8 * 1024 * 1024
ARENAS = 2

#: (command, mallopt parameter, value, the glibc variable that overrides it); None: all.
TUNING: tuple[tuple[str | None, int, int, str], ...] = (
    (None, M_MMAP_THRESHOLD, MMAP_THRESHOLD, "MALLOC_MMAP_THRESHOLD_"),
    (None, M_ARENA_MAX, ARENAS, "MALLOC_ARENA_MAX"),
    ("restore", M_TRIM_THRESHOLD, KEEP_FREED_BYTES, "MALLOC_TRIM_THRESHOLD_"),
)


def tune_allocator(command: str | None, environ: Mapping[str, str] = os.environ) -> None:
    """Apply the tuning for `command` (the first word of the command line)."""
    if environ.get(DISABLE_VARIABLE) == "1":
        return
    for for_command, option, value, variable in TUNING:
        if (for_command is None or for_command == command) and variable not in environ:
            _mallopt(option, value)


def _mallopt(option: int, value: int) -> None:
    """glibc's mallopt(option, value); nothing where the C library has no mallopt."""
    import ctypes

    try:  # the process's own symbols: libc is linked in (find_library would run ldconfig)
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(option, value)
