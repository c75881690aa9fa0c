"""The `bbackup` entry point, and the early key derivation it starts before the CLI has
finished loading. Off with BBACKUP_NO_EARLY_UNLOCK=1 (the key is then derived when the
command opens the repository, as it would be anyway).

Opening a repository costs ~0.3 s of Argon2 on two cores, and importing typer, asyncio
and the repository layer ~0.1 s more on one; an unchanged backup takes little else. The
derivation needs only the key files and the password, so `main` calls `unlock_early`
before it imports the application: if the command line names a local repository and the
password comes from BBACKUP_PASSWORD or a password file, the keys of its key files are
derived in a background thread (`crypto.kdf.derive_ahead`, a module that imports only
cryptography's KDFs, so the derivation starts ~20 ms into the process) while the rest of
the program loads. The command then opens the repository as usual, and the derivation for
the same key file and password takes the key made in the background. For a remote
repository (S3), whose key files cannot be read without the S3 client (~0.3 s to import),
the guess is the copy of the key file that opened it last time, which the cache keeps
(`cache_paths.unlock_hint`; `cli.opening.key_hint` says when it is written).

Peak memory: Argon2 holds 64 MiB while it runs, and what the program loads meanwhile comes
on top (~17 MiB for a local repository, ~30 MiB with the S3 client): a peak of ~100-115
MiB instead of ~82 for the derivation alone. Loading after the derivation instead costs
wall time even where the derivation's threads fill every core: the loading then waits
instead of taking its share of the cores (on two cores about half the load time, ~0.07 s
local and ~0.25 s with the S3 client; with cores to spare, all of it). So `main` waits
for the derivation only where memory is short (`memory_is_short`: less than
SHORT_OF_MEMORY available to this process), where 20-30 MiB matter more than a fraction
of a second (docs/startup.md).

This is only a guess at what the command will do. It never reports an error or prints
anything: whatever goes wrong here goes wrong again, properly reported, in the command.
This module imports only light modules at the top: it runs before everything else.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Mapping, Sequence

from bbackup.cache_paths import cache_directory, unlock_hint
from bbackup.cli.password import password_without_asking

#: The switch: set to 1 to derive the key only when the command opens the repository.
DISABLE_VARIABLE = "BBACKUP_NO_EARLY_UNLOCK"
#: Commands that never open a repository with a password that already exists.
_NO_KEY = frozenset({"init", "--help", "-h", "--version"})
_MAX_KEY_FILES = 8
_MAX_KEY_FILE_BYTES = 64 * 1024


def _option(argv: Sequence[str], *names: str) -> str | None:
    """The value of the last `--name value` / `--name=value` / `-r value` in argv: the
    few options of `cli.options` this guess needs, before typer has loaded to parse them."""
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


def unlock_early(argv: Sequence[str], environ: Mapping[str, str]) -> threading.Thread | None:
    """Start deriving the keys of the repository `argv` names if the password can be had
    without asking: from its key files if it is local, else from the copy of the key file
    that opened it last time (`unlock_hint`); otherwise do nothing. Returns the derivation
    to wait for before loading the rest where memory is short (`memory_is_short`)."""
    if environ.get(DISABLE_VARIABLE) == "1":
        return None
    if not argv or argv[0] in _NO_KEY or any(a in ("--help", "-h") for a in argv):
        return None
    try:
        password = password_without_asking(
            _option(argv, "--password-file") or environ.get("BBACKUP_PASSWORD_FILE"),
            environ,
            password_command=_option(argv, "--password-command")
            or environ.get("BBACKUP_PASSWORD_COMMAND"),
        )
        if password is None:
            return None  # a password command or a prompt: the command runs it, once
        location = _option(argv, "--repo", "-r") or environ.get("BBACKUP_REPOSITORY")
        if not location:
            return None
        keys = _local_keys_directory(location)
        if keys is not None:
            paths = [
                os.path.join(keys, n) for n in sorted(os.listdir(keys)) if not n.startswith(".")
            ]
        elif "--no-cache" not in argv:
            # Remote: the key file that opened this repository last time, if remembered.
            explicit = _option(argv, "--cache-dir") or environ.get("BBACKUP_CACHE_DIR")
            paths = [unlock_hint(cache_directory(explicit, environ), location)]
        else:
            return None
        if not 0 < len(paths) <= _MAX_KEY_FILES:
            return None
        files = []
        for path in paths:
            with open(path, "rb") as f:
                data = f.read(_MAX_KEY_FILE_BYTES + 1)
            if len(data) > _MAX_KEY_FILE_BYTES:
                return None
            files.append(data)
        from bbackup.crypto.kdf import derive_ahead

        thread = derive_ahead(files, password)
        return thread if thread is not None and memory_is_short() else None
    except Exception:  # a guess: the command reports the real error
        return None


#: Below this much memory available to the process, `main` loads the program only after
#: the early key derivation, so that their peaks do not add up.
SHORT_OF_MEMORY = 512 * 1024 * 1024


def memory_is_short(limit: int | None = None) -> bool:
    """Whether less than `limit` bytes (SHORT_OF_MEMORY) are available to this process:
    the kernel's MemAvailable, or what is left under the cgroup's memory limit (a
    container), whichever is less. False where neither can be read."""
    limit = SHORT_OF_MEMORY if limit is None else limit
    available = [_meminfo_available()]
    for limit_file, usage_file in _cgroup_memory_files():
        available.append(_cgroup_available(limit_file, usage_file))
    known = [a for a in available if a is not None]
    return bool(known) and min(known) < limit


def _cgroup_memory_files() -> list[tuple[str, str]]:
    """(limit, usage) files of the memory cgroups that may bound this process: its own
    cgroup v2 (a systemd unit's MemoryMax=), the namespace's root (a container), and
    cgroup v1's."""
    files = [
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        (
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "/sys/fs/cgroup/memory/memory.usage_in_bytes",
        ),
    ]
    try:
        with open("/proc/self/cgroup", "rb") as f:
            for line in f:
                if line.startswith(b"0::/") and len(line.strip()) > 4:
                    own = "/sys/fs/cgroup" + line[3:].strip().decode(errors="replace")
                    files.insert(0, (own + "/memory.max", own + "/memory.current"))
    except OSError:
        pass
    return files


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo", "rb") as f:
            for line in f:
                if line.startswith(b"MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_available(limit_file: str, usage_file: str) -> int | None:
    try:
        with open(limit_file, "rb") as f:
            limit = f.read().strip()
        with open(usage_file, "rb") as f:
            usage = int(f.read())
        return None if limit == b"max" else int(limit) - usage  # v1's "no limit" is huge
    except (OSError, ValueError):
        return None


def main() -> None:
    """The `bbackup` command: start unlocking, then load and run the application, and
    exit as soon as it is done (`cli.fast_exit`)."""
    from bbackup.cli.fast_exit import exit_now

    unlocking = unlock_early(sys.argv[1:], os.environ)
    if unlocking is not None:
        try:
            unlocking.join()
        except KeyboardInterrupt:
            exit_now(130)  # Ctrl-C before anything started: nothing to report or undo
    from bbackup.cli.app import main as run

    try:
        run()
    except SystemExit as exc:
        exit_now(exc.code)
    exit_now(0)
