"""Finding a command's worker processes (seal workers, write workers) by the marker a test
put in the command's environment, which its children inherit."""

from __future__ import annotations

import os
from pathlib import Path


def workers_marked(module: str, marker: str) -> list[int]:
    """PIDs of processes running `python -m <module>` whose environment holds `marker`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            environ = Path(f"/proc/{entry}/environ").read_bytes()
        except OSError:
            continue
        if module.encode() in cmdline and marker.encode() in environ:
            found.append(int(entry))
    return found
