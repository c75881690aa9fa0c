"""How much of one memory map is resident, for tests of buffers that give their memory
back (packs, a chunker's buffer), and whether this kernel offers huge pages (Linux)."""

from __future__ import annotations

import ctypes
import mmap

_PAGE = mmap.PAGESIZE
_libc = ctypes.CDLL(None, use_errno=True)


def _span(buffer: mmap.mmap) -> tuple[int, int]:
    start = ctypes.addressof(ctypes.c_char.from_buffer(buffer))
    return start, start + len(buffer)


def resident_bytes(buffer: mmap.mmap) -> int:
    """Bytes of `buffer` in memory now, page by page (mincore): exactly its own range,
    whatever neighbouring map the kernel merged it with."""
    start, end = _span(buffer)
    pages = -(-(end - start) // _PAGE)
    vector = (ctypes.c_ubyte * pages)()
    if _libc.mincore(ctypes.c_void_p(start), ctypes.c_size_t(end - start), vector) != 0:
        raise OSError(ctypes.get_errno(), "mincore failed")
    return sum(v & 1 for v in vector) * _PAGE


def huge_page_bytes(buffer: mmap.mmap) -> int:
    """Bytes of `buffer` in transparent huge pages: AnonHugePages of the kernel's areas
    that start inside its range (/proc/self/smaps). Advice on part of a map splits it
    into areas; an area only starts inside the range if it is the map's."""
    start, end = _span(buffer)
    total, inside = 0, False
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            head = line.split(" ", 1)[0]
            if "-" in head and ":" not in head:
                low = int(head.split("-")[0], 16)
                inside = start <= low < end
            elif inside and line.startswith("AnonHugePages:"):
                total += int(line.split()[1]) * 1024
    return total


def huge_pages_on_request() -> bool:
    """Whether this kernel gives transparent huge pages to maps that ask for them."""
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as setting:
            return "[never]" not in setting.read()
    except OSError:
        return False
