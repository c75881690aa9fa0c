"""The scratch directory a drill restores into: private, under the cache directory or
$TMPDIR, removed when the drill ends however it ends, and removed by the next drill when a
killed one (SIGKILL, a power cut) could not."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

#: What the scratch directories are called: the drill's process ID follows, so a drill
#: can remove what a killed one left behind.
SCRATCH_PREFIX = "drill-"


@contextlib.contextmanager
def scratch_directory(root: Path) -> Iterator[Path]:
    """A private directory under `root` for the block, removed when it ends however it
    ends (an error, a cancelled task on SIGINT or SIGTERM)."""
    path = Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-", dir=root))
    try:
        yield path
    finally:
        remove_tree(path)


def remove_tree(path: Path) -> None:
    """Remove a restored tree, even where the snapshot made a directory read-only."""
    with contextlib.suppress(FileNotFoundError):
        _open_up(path)
    shutil.rmtree(path, ignore_errors=True)


def _open_up(path: Path) -> None:
    """Give every directory under `path` (never following a symlink) write and search
    permission for its owner, so that what is in it can be removed."""
    os.chmod(path, 0o700, follow_symlinks=False)
    with os.scandir(path) as entries:
        subdirs = [Path(e.path) for e in entries if e.is_dir(follow_symlinks=False)]
    for subdir in subdirs:
        _open_up(subdir)


def prepare_scratch_root(root: Path) -> None:
    """Make `root` if need be, and remove the scratch directories in it that drills killed
    before they could clean up left behind (their process is gone): only real directories
    of this user, never what a symlink named like one points to."""
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        entries = list(root.glob(f"{SCRATCH_PREFIX}*-*"))
    except OSError:
        return
    for entry in entries:
        try:
            info = entry.lstat()
        except OSError:
            continue
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
            continue  # not a drill's: planted (a symlink; another user's, in a shared $TMPDIR)
        pid_text = entry.name.removeprefix(SCRATCH_PREFIX).split("-", 1)[0]
        if not pid_text.isdigit() or int(pid_text) == os.getpid():
            continue
        try:
            os.kill(int(pid_text), 0)
        except ProcessLookupError:
            remove_tree(entry)
        except OSError:
            continue  # alive (another user's)
