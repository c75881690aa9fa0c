"""Where the local cache lives on this machine, and where in it the copy of the key file
that last opened a remote repository is kept. A leaf that imports only the standard
library, so that the entry point (`cli/early.py`) can use it before anything else loads."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path


def default_cache_root(environ: Mapping[str, str] = os.environ) -> Path:
    """$XDG_CACHE_HOME/bbackup, else ~/.cache/bbackup."""
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "bbackup"


def cache_root(explicit: str | None, environ: Mapping[str, str] = os.environ) -> Path:
    """The cache directory a command uses: `explicit` (--cache-dir or BBACKUP_CACHE_DIR)
    if given, else the default."""
    return Path(explicit) if explicit else default_cache_root(environ)


def unlock_hint(root: str | os.PathLike[str], location: str) -> Path:
    """Where the cache keeps a copy of the key file that last opened the repository at
    `location` (as given on the command line), so that the next command can start
    deriving its key before it has loaded the S3 client and fetched the real one."""
    return Path(root, "unlock", hashlib.sha256(location.encode()).hexdigest()[:32])
