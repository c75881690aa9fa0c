"""Start the key derivation before the CLI has finished starting up.

Opening a repository costs ~0.3 s of Argon2 on two cores, and importing typer, asyncio
and the repository layer ~0.1 s more on one; an unchanged backup takes little else. The
derivation needs only the key files and the password, so the program's entry point,
`main` here, calls `unlock_early` before it imports the application: if the command
line names a local repository and the password comes from BBACKUP_PASSWORD or a
password file, the keys of its key files are derived in a background thread
(`crypto.kdf.derive_ahead`, a module that imports only cryptography's KDFs, so the
derivation starts ~20 ms into the process) while the rest of the program loads. The
command then opens the repository as usual, and the derivation for the same key file
and password takes the key made in the background. For a remote repository (S3), whose
key files cannot be read without the S3 client (~0.3 s to import), the guess is the
copy of the key file that opened it last time, which the cache keeps (`unlock_hint`).

This is only a guess at what the command will do. It never reports an error or prints
anything: whatever goes wrong here goes wrong again, properly reported, in the command.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from typing import NoReturn

#: Commands that never open a repository with a password that already exists.
_NO_KEY = frozenset({"init", "--help", "-h", "--version"})
_MAX_KEY_FILES = 8
_MAX_KEY_FILE_BYTES = 64 * 1024


def read_password_file(path: str) -> str:
    """The password in a password file: its text without the trailing line break."""
    with open(path) as f:
        return f.read().rstrip("\r\n")


def _option(argv: Sequence[str], *names: str) -> str | None:
    """The value of the last `--name value` / `--name=value` / `-r value` in argv."""
    value = None
    for i, arg in enumerate(argv):
        if arg == "--":
            break
        if arg in names and i + 1 < len(argv):
            value = argv[i + 1]
        else:
            for name in names:
                if name.startswith("--") and arg.startswith(name + "="):
                    value = arg[len(name) + 1 :]
    return value


def _local_keys_directory(location: str) -> str | None:
    """Where the key files of a local repository are, for the common spellings of one (a
    path or a file:// URL); None for anything else. A cheap guess: parsing the URL for
    real imports the storage layer, which is the start-up time this module saves."""
    if location.startswith("file://"):
        location = location[len("file://") :]
    elif "://" in location:
        return None
    return os.path.join(os.path.abspath(os.path.expanduser(location)), "keys")


def cache_root(argv: Sequence[str], environ: Mapping[str, str]) -> str:
    """The cache directory the command will use (as `--cache-dir`, BBACKUP_CACHE_DIR or
    `repository.cache.default_cache_root` give it), without importing the application."""
    explicit = _option(argv, "--cache-dir") or environ.get("BBACKUP_CACHE_DIR")
    if explicit:
        return explicit
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "bbackup")


def unlock_hint(root: str | os.PathLike[str], location: str) -> str:
    """Where the cache keeps a copy of the key file that last opened the repository at
    `location` (as given on the command line), so that the next command can start
    deriving its key before it has loaded the S3 client and fetched the real one."""
    import hashlib

    return os.path.join(root, "unlock", hashlib.sha256(location.encode()).hexdigest()[:32])


def unlock_early(argv: Sequence[str], environ: Mapping[str, str]) -> None:
    """Start deriving the keys of the repository `argv` names if the password can be had
    without asking: from its key files if it is local, else from the copy of the key file
    that opened it last time (`unlock_hint`); otherwise do nothing."""
    if not argv or argv[0] in _NO_KEY or any(a in ("--help", "-h") for a in argv):
        return
    try:
        password = environ.get("BBACKUP_PASSWORD")
        if password is None:
            path = _option(argv, "--password-file") or environ.get("BBACKUP_PASSWORD_FILE")
            if not path:
                return  # a password command or a prompt: the command runs it, once
            password = read_password_file(path)
        location = _option(argv, "--repo", "-r") or environ.get("BBACKUP_REPOSITORY")
        if not location:
            return
        keys = _local_keys_directory(location)
        if keys is not None:
            paths = [
                os.path.join(keys, n) for n in sorted(os.listdir(keys)) if not n.startswith(".")
            ]
        elif "--no-cache" not in argv:
            # Remote: the key file that opened this repository last time, if remembered.
            paths = [unlock_hint(cache_root(argv, environ), location)]
        else:
            return
        if not 0 < len(paths) <= _MAX_KEY_FILES:
            return
        files = []
        for path in paths:
            with open(path, "rb") as f:
                data = f.read(_MAX_KEY_FILE_BYTES + 1)
            if len(data) > _MAX_KEY_FILE_BYTES:
                return
            files.append(data)
        from bbackup.crypto.kdf import derive_ahead

        derive_ahead(files, password)
    except Exception:  # a guess: the command reports the real error
        return


def exit_status(code: object) -> int:
    """The exit status `sys.exit(code)` gives: None is 0, an int itself, anything else is
    printed to stderr and gives 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def exit_now(code: object) -> NoReturn:
    """End the process once a command has finished: flush stdout and stderr, then leave
    without the interpreter's teardown.

    By the time a command returns, its repository writes are complete, its lock is
    released, its worker threads are joined and its files closed; what the teardown does
    after that is free every object and module one by one, ~30 ms of an unchanged
    backup's ~0.5 s (more after a restore that held a large index). Output that cannot be
    flushed (a closed pipe) gives 120, as the interpreter's own shutdown would."""
    status = exit_status(code)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe, or a stream closed already
            status = status or 120
    os._exit(status)


def main() -> None:
    """The `bbackup` command: start unlocking, then load and run the application, and
    exit as soon as it is done (`exit_now`)."""
    unlock_early(sys.argv[1:], os.environ)
    from bbackup.cli.app import main as run

    try:
        run()
    except SystemExit as exc:
        exit_now(exc.code)
    exit_now(0)
