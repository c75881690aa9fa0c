"""restic-style exclude patterns (`backup --exclude`, `rewrite --exclude`, `find`). Only the
standard library: the totals scan's child process (`ops.totals_scan`) imports it alone.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Sequence
from functools import lru_cache


class Excluder:
    """restic-style exclude patterns.

    A pattern without '/' matches a name at any depth (`*.tmp`, `node_modules`); a pattern
    with '/' matches the absolute path (`/home/*/.cache`); `**` matches across directories.
    """

    def __init__(self, patterns: Sequence[str]) -> None:
        self.patterns = [p.rstrip("/") for p in patterns if p.strip()]

    def excluded(self, path: bytes) -> bool:
        if not self.patterns:
            return False
        text = os.fsdecode(path)
        base = text.rsplit("/", 1)[-1]
        for pattern in self.patterns:
            if "/" in pattern:
                if _compile(pattern).match(text):
                    return True
            elif fnmatch.fnmatchcase(base, pattern):
                return True
        return False


@lru_cache(maxsize=256)
def _compile(pattern: str) -> re.Pattern[str]:
    # fnmatch's '*' already crosses '/', so '**' needs no special case beyond collapsing.
    return re.compile(fnmatch.translate(pattern.replace("**", "*")))
