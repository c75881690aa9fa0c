"""Where the local cache lives on this machine, and where in it the copy of the key file
that last opened a remote repository is kept. A leaf that the entry point (`cli/early.py`)
uses before its key derivation starts: it imports nothing but `os` at the top (pathlib
and hashlib cost ~15-60 ms there, paid before the derivation could start)."""

from __future__ import annotations

import os
from collections.abc import Mapping

TYPE_CHECKING = False  # as typing.TYPE_CHECKING (mypy knows the name), without importing typing
if TYPE_CHECKING:
    from pathlib import Path


def cache_directory(explicit: str | None, environ: Mapping[str, str] = os.environ) -> str:
    """The cache directory a command uses: `explicit` (--cache-dir or BBACKUP_CACHE_DIR)
    if given, else $XDG_CACHE_HOME/bbackup, else ~/.cache/bbackup."""
    if explicit:
        return explicit
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "bbackup")


def default_cache_root() -> Path:
    """The cache directory without --cache-dir: $XDG_CACHE_HOME/bbackup or ~/.cache/bbackup."""
    from pathlib import Path

    return Path(cache_directory(None))


def unlock_hint(root: str | os.PathLike[str], location: str) -> str:
    """Where the cache keeps a copy of the key file that last opened the repository at
    `location` (as given on the command line), so that the next command can start
    deriving its key before it has loaded the S3 client and fetched the real one."""
    import hashlib

    return os.path.join(root, "unlock", hashlib.sha256(location.encode()).hexdigest()[:32])
