"""Exclude patterns as given on the command line: `--exclude P` (repeatable) and
`--exclude-file F` (one pattern a line; blank lines and `#` comments skipped)."""

from __future__ import annotations

import os
from pathlib import Path

from bbackup.errors import UsageError


def read_exclude_patterns(patterns: list[str] | None, files: list[str] | None) -> list[str]:
    """The patterns given directly, then those of each file in turn."""
    result = list(patterns or [])
    for path in files or []:
        try:
            # Decoded as file names are: a pattern may hold bytes that are not UTF-8.
            lines = os.fsdecode(Path(path).read_bytes()).splitlines()
        except OSError as exc:
            raise UsageError(f"cannot read exclude file {path}: {exc.strerror}") from exc
        result += [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    return result
