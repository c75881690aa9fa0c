"""How much of one memory map is resident, for tests of buffers that give their memory
back (packs, a chunker's buffer), and whether this kernel offers huge pages (Linux)."""

from __future__ import annotations

import ctypes
import mmap


def map_usage(buffer: mmap.mmap) -> dict[str, int]:
    """Rss and AnonHugePages of `buffer`'s map, in bytes (/proc/self/smaps)."""
    start = f"{ctypes.addressof(ctypes.c_char.from_buffer(buffer)):x}-"
    usage: dict[str, int] = {}
    with open("/proc/self/smaps") as smaps:
        lines = iter(smaps)
        for line in lines:
            if line.startswith(start):
                for field in lines:
                    key, _, rest = field.partition(":")
                    if key in ("Rss", "AnonHugePages"):
                        usage[key] = int(rest.split()[0]) * 1024
                    if key == "VmFlags":
                        return usage
    raise AssertionError("the map is not in /proc/self/smaps")


def huge_pages_on_request() -> bool:
    """Whether this kernel gives transparent huge pages to maps that ask for them."""
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as setting:
            return "[never]" not in setting.read()
    except OSError:
        return False
