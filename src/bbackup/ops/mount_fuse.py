"""libfuse through mfusepy: finding it (a one-line error naming what to install when it is
missing), checking the mount point, serving a filesystem in the foreground, and unmounting
it from another thread so that the serving call returns.

mfusepy (ctypes over the system's libfuse3.so.3 or libfuse.so.2, a pure-Python wheel) is
imported here only, when a mount starts: no other command pays for it or needs it.
"""

from __future__ import annotations

import ctypes
import errno
import importlib
import os
import shutil
import subprocess
from types import ModuleType
from typing import Any

from bbackup.errors import BbackupError, ExitCode, UsageError

INSTALL_HINT = "apt-get install fuse3 (Debian, Ubuntu; or scripts/install-fuse.sh as root)"
#: umount2 flag: detach now, finish when the last open file closes.
MNT_DETACH = 2


class FuseUnavailable(BbackupError):
    """libfuse, /dev/fuse or mfusepy is missing, or libfuse could not mount."""

    exit_code = ExitCode.ERROR


class MountPointUnusable(UsageError):
    """The mount point is not an empty directory."""


def load_fuse() -> ModuleType:
    """The mfusepy module, with libfuse loaded; FuseUnavailable saying what is missing."""
    if not os.path.exists("/dev/fuse"):
        raise FuseUnavailable(
            "mount needs /dev/fuse: load the kernel's fuse module (modprobe fuse), or run "
            "the container with --device /dev/fuse --cap-add SYS_ADMIN"
        )
    try:
        return importlib.import_module("mfusepy")
    except ImportError:
        raise FuseUnavailable(
            "mount needs the Python package mfusepy: pip install 'bbackup[mount]'"
        ) from None
    except (OSError, AttributeError) as exc:  # mfusepy found no libfuse, or a wrong one
        raise FuseUnavailable(
            f"mount needs libfuse (libfuse3.so.3 or libfuse.so.2): {exc}; {INSTALL_HINT}"
        ) from None


def unmount_tool() -> str | None:
    """fusermount3 (or fusermount for libfuse 2): how a user who is not root unmounts."""
    return shutil.which("fusermount3") or shutil.which("fusermount")


def check_mount_point(path: str) -> str:
    """`path` as an absolute path without symlinks (as the mount table shows it);
    MountPointUnusable unless it is an empty directory this user may mount on."""
    where = os.path.realpath(path)
    try:
        entries = os.listdir(where)
    except FileNotFoundError:
        raise MountPointUnusable(f"mount point {path}: no such directory") from None
    except NotADirectoryError:
        raise MountPointUnusable(f"mount point {path} is not a directory") from None
    except OSError as exc:  # a stale FUSE mount: ENOTCONN
        hint = f" (a stale mount? {unmount_tool() or 'umount'} -u {path})" * (
            exc.errno == errno.ENOTCONN
        )
        raise MountPointUnusable(f"mount point {path}: {exc.strerror}{hint}") from None
    if entries:
        raise MountPointUnusable(f"mount point {path} is not an empty directory")
    if os.geteuid() != 0 and unmount_tool() is None:
        raise FuseUnavailable(f"mount needs fusermount3 to mount as a user: {INSTALL_HINT}")
    return where


def serve(fuse: ModuleType, operations: Any, mount_point: str, *, allow_other: bool) -> None:
    """Mount `operations` read-only at `mount_point` and serve requests until it is
    unmounted (see `unmount`). libfuse's threads call `operations`."""
    options: dict[str, Any] = {
        "foreground": True,
        "ro": True,
        "fsname": "bbackup",
        "subtype": "bbackup",
        # Snapshots never change: what the kernel has cached of a file stays valid.
        "kernel_cache": True,
        # A restored setuid file or device node grants nothing through the mount.
        "nosuid": True,
        "nodev": True,
    }
    if allow_other:
        # Other users get what the snapshot's modes and owners allow them, no more: the
        # kernel checks them (without this, every user could read every file).
        options["allow_other"] = True
        options["default_permissions"] = True
    try:
        fuse.FUSE(operations, mount_point, **options)
    except RuntimeError as exc:
        raise FuseUnavailable(
            f"libfuse could not mount {mount_point} (status {exc}; its message is above)"
        ) from None


def is_mounted(mount_point: str) -> bool:
    """Whether something is mounted at `mount_point` (an absolute path), from the kernel's
    mount table: asking the filesystem itself could wait for a loop not yet serving."""
    try:
        with open("/proc/self/mounts", encoding="utf-8", errors="surrogateescape") as table:
            lines = table.read().splitlines()
    except OSError:
        return os.path.ismount(mount_point)
    escaped = (
        mount_point.replace("\\", "\\134")
        .replace(" ", "\\040")
        .replace("\t", "\\011")
        .replace("\n", "\\012")
    )
    return any(line.split(" ")[1:2] == [escaped] for line in lines)


def unmount(mount_point: str) -> bool:
    """Unmount, which ends `serve`; a mount still in use (a shell inside it) is detached
    instead and goes when its last file closes. Returns whether it had to detach."""
    if os.geteuid() == 0:
        libc = ctypes.CDLL(None, use_errno=True)
        path = os.fsencode(mount_point)
        if libc.umount2(path, 0) == 0:
            return False
        if ctypes.get_errno() == errno.EBUSY:
            libc.umount2(path, MNT_DETACH)
            return True
        return False
    tool = unmount_tool()
    if tool is None:
        return False
    if subprocess.run([tool, "-u", mount_point], capture_output=True).returncode == 0:
        return False
    subprocess.run([tool, "-u", "-z", mount_point], capture_output=True)
    return True
