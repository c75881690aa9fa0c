"""Metadata of restored entries: a sparse file's length, owner (by name where this machine
knows the name, else by number; the users and groups a POSIX ACL names likewise), mode
with its set-id and sticky bits, extended attributes and ACLs, and times — applied through
the entry's own descriptor, or by name relative to its directory's descriptor for entries
that cannot be opened.
"""

from __future__ import annotations

import errno
import grp
import os
import pwd
import stat
from collections.abc import Callable

from bbackup.ops.posix_acl import ACL_USER, ACL_XATTRS, remap_acl
from bbackup.snapshot.model import Node

#: Extended attributes a restore removes when the snapshot's entry lacks them: ACLs a new
#: file inherits from a default ACL of the target, user attributes of what was there.
#: Others (security.selinux above all) belong to the machine, not to the snapshot.
_OWNED_PREFIXES = ("user.", "system.posix_acl_")
#: What an unprivileged restore may fail to set without it being an error (as ownership).
_PRIVILEGED_ERRORS = (errno.EPERM, errno.EACCES)


class OwnerMapping:
    """Which uid and gid a node's owner gets on this machine: the ones its user and group
    names have here, or its recorded numbers when a name is unknown here (or not recorded,
    or `numeric` asks for numbers, as tar's --numeric-owner). Lookups are cached."""

    def __init__(self, *, numeric: bool = False) -> None:
        self.numeric = numeric
        self._uids: dict[str, int | None] = {}
        self._gids: dict[str, int | None] = {}

    def ids(self, node: Node) -> tuple[int, int]:
        if self.numeric:
            return node.uid, node.gid
        uid = self._uid(node.user) if node.user else None
        gid = self._gid(node.group) if node.group else None
        return (node.uid if uid is None else uid, node.gid if gid is None else gid)

    def acl_ids(self, node: Node) -> dict[tuple[int, int], int]:
        """(ACL tag, recorded id) → id here, for the users and groups the node's ACLs
        name whose names have another id on this machine."""
        if self.numeric:
            return {}
        ids = {}
        for tag, ident, name in node.acl_names:
            here = self._uid(name) if tag == ACL_USER else self._gid(name)
            if here is not None and here != ident:
                ids[tag, ident] = here
        return ids

    def _uid(self, name: str) -> int | None:
        if name not in self._uids:
            try:
                self._uids[name] = pwd.getpwnam(name).pw_uid
            except KeyError:
                self._uids[name] = None
        return self._uids[name]

    def _gid(self, name: str) -> int | None:
        if name not in self._gids:
            try:
                self._gids[name] = grp.getgrnam(name).gr_gid
            except KeyError:
                self._gids[name] = None
        return self._gids[name]


def restore_owners(*, numeric: bool = False) -> OwnerMapping | None:
    """The owner mapping of a restore run by root; None otherwise: only root can give
    files away, so an unprivileged restore leaves them to the user who runs it."""
    return OwnerMapping(numeric=numeric) if os.geteuid() == 0 else None


def set_metadata(fd: int, node: Node, *, chown: OwnerMapping | None, bare: bool = False) -> None:
    """Length, ownership, mode, xattrs and times of an open file or directory, in the
    order that keeps each one: chown clears set-id bits and file capabilities, so the mode
    and xattrs come after it; an ACL sets the mode's group bits, so it comes after the
    mode (the recorded mode already has them); and the times come last.

    Ownership and mode are only changed where they differ: each change is a journalled
    inode update, and with many small files those dominate a restore. A failed xattr
    does not stop the rest: it is raised once the times are set.

    `bare`: this restore has just created the entry (O_EXCL) in a directory without a
    default ACL, so it has no user attributes or ACLs to remove and its attributes are
    not listed (one system call per file less)."""
    st = os.fstat(fd)
    if node.holes and st.st_size < node.size:
        os.ftruncate(fd, node.size)  # a trailing hole gets no write
    uid, gid = chown.ids(node) if chown is not None else (st.st_uid, st.st_gid)
    chowned = (st.st_uid, st.st_gid) != (uid, gid)
    if chowned:
        os.chown(fd, uid, gid)
    if chowned or stat.S_IMODE(st.st_mode) != stat.S_IMODE(node.mode):
        os.chmod(fd, stat.S_IMODE(node.mode))
    failure = _set_xattrs(
        node,
        chown,
        list if bare else lambda: os.listxattr(fd),
        lambda name, value: os.setxattr(fd, name, value),
        lambda name: os.removexattr(fd, name),
    )
    atime = node.atime_ns or node.mtime_ns  # directories carry no atime
    os.utime(fd, ns=(atime, node.mtime_ns))
    if failure is not None:
        raise failure


def set_metadata_at(dir_fd: int, name: bytes, node: Node, *, chown: OwnerMapping | None) -> None:
    """Metadata of the symlink or special file `name` in `dir_fd`, never following it:
    such files cannot be opened for it (a device's open has effects, a FIFO's blocks).
    Linux keeps no mode of a symlink's own, so a symlink's mode is left alone."""
    st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    if chown is not None:
        uid, gid = chown.ids(node)
        chowned = (st.st_uid, st.st_gid) != (uid, gid)
        if chowned:
            os.chown(name, uid, gid, dir_fd=dir_fd, follow_symlinks=False)
    else:
        chowned = False
    is_link = stat.S_ISLNK(st.st_mode)
    if not is_link and (chowned or stat.S_IMODE(st.st_mode) != stat.S_IMODE(node.mode)):
        _chmod_entry(dir_fd, name, stat.S_IMODE(node.mode))
    # The directory's descriptor stands in for its path; `name` itself is not followed.
    path = b"/proc/self/fd/%d/%s" % (dir_fd, name)
    failure = _set_xattrs(
        node,
        chown,
        lambda: os.listxattr(path, follow_symlinks=False),
        lambda key, value: os.setxattr(path, key, value, follow_symlinks=False),
        lambda key: os.removexattr(path, key, follow_symlinks=False),
    )
    atime = node.atime_ns or node.mtime_ns
    os.utime(name, ns=(atime, node.mtime_ns), dir_fd=dir_fd, follow_symlinks=False)
    if failure is not None:
        raise failure


def _set_xattrs(
    node: Node,
    chown: OwnerMapping | None,
    list_names: Callable[[], list[str]],
    set_one: Callable[[bytes, bytes], None],
    remove_one: Callable[[str], None],
) -> OSError | None:
    """Make the entry's user attributes and ACLs those of the node (the users and groups
    an ACL names mapped as the owner is) and set its other attributes; the first failure,
    if any (after trying every attribute)."""
    failure: OSError | None = None
    privileged = chown is not None
    acl_ids = chown.acl_ids(node) if chown is not None and node.acl_names else {}
    wanted = {name for name, _ in node.xattrs}
    try:
        present = list_names()
    except OSError:
        present = []  # no xattrs on this filesystem: nothing to remove
    for present_name in present:
        if present_name.startswith(_OWNED_PREFIXES) and os.fsencode(present_name) not in wanted:
            try:
                remove_one(present_name)
            except OSError as exc:
                failure = failure or _xattr_error(exc, os.fsencode(present_name), "removed")
    for name, value in node.xattrs:
        try:
            set_one(name, remap_acl(value, acl_ids) if name in ACL_XATTRS else value)
        except OSError as exc:
            if not privileged and exc.errno in _PRIVILEGED_ERRORS and not name.startswith(b"user."):
                continue  # trusted.*, security.*: root's to set, like ownership
            failure = failure or _xattr_error(exc, name, "set")
    return failure


def _xattr_error(exc: OSError, name: bytes, verb: str) -> OSError:
    reason = exc.strerror or str(exc)
    return OSError(exc.errno, f"extended attribute {os.fsdecode(name)} not {verb}: {reason}")


def _chmod_entry(dir_fd: int, name: bytes, mode: int) -> None:
    """chmod without following `name`: through an O_PATH descriptor of the entry itself
    (what glibc's fchmodat(AT_SYMLINK_NOFOLLOW) does from 2.32 on; earlier ones refuse)."""
    fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        if stat.S_ISLNK(os.fstat(fd).st_mode):
            return  # replaced by a symlink since: it has no mode to set
        os.chmod(f"/proc/self/fd/{fd}", mode)
    finally:
        os.close(fd)
