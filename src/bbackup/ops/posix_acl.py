"""POSIX ACLs in the form Linux keeps them as extended attributes (`system.posix_acl_access`
and `system.posix_acl_default`): the users and groups an ACL names, so that backup can
record their names and restore can give those entries the ids the names have there.

The value is a little-endian u32 version (2) and then 8-byte entries (u16 tag, u16
permissions, u32 id); only the USER and GROUP entries carry an id (acl_ea.h).
"""

from __future__ import annotations

import errno
import os
import struct
from collections.abc import Mapping

ACL_XATTRS = (b"system.posix_acl_access", b"system.posix_acl_default")
ACL_USER, ACL_GROUP = 0x02, 0x08
_VERSION = 2
_HEADER = struct.Struct("<I")
_ENTRY = struct.Struct("<HHI")


def has_default_acl(dir_fd: int) -> bool:
    """Whether the open directory has a default ACL, which what is created in it inherits
    as its access ACL (and a directory as its default ACL too). True when unsure: then a
    restore looks for inherited attributes rather than assume there are none."""
    try:
        os.getxattr(dir_fd, ACL_XATTRS[1])
    except OSError as exc:
        return exc.errno not in (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP)
    return True


def _entries(value: bytes) -> list[tuple[int, int, int]] | None:
    """(tag, permissions, id) of each entry; None if `value` is not an ACL of this form."""
    body = len(value) - _HEADER.size
    if body < 0 or body % _ENTRY.size or _HEADER.unpack_from(value)[0] != _VERSION:
        return None
    return [
        _ENTRY.unpack_from(value, offset) for offset in range(_HEADER.size, len(value), _ENTRY.size)
    ]


def named_qualifiers(value: bytes) -> list[tuple[int, int]]:
    """(tag, id) of the USER and GROUP entries of an ACL xattr value."""
    return [(tag, ident) for tag, _, ident in _entries(value) or [] if tag in (ACL_USER, ACL_GROUP)]


def remap_acl(value: bytes, ids: Mapping[tuple[int, int], int]) -> bytes:
    """The ACL with each USER/GROUP entry's id replaced as `ids` says ((tag, old id) → new
    id), entries in the order the kernel keeps (by tag, then id). Anything that is not an
    ACL of this form is returned as it is."""
    entries = _entries(value)
    if entries is None or not ids:
        return value
    mapped = sorted(
        (
            (tag, perm, ids.get((tag, ident), ident) if tag in (ACL_USER, ACL_GROUP) else ident)
            for tag, perm, ident in entries
        ),
        key=lambda entry: (entry[0], entry[2]),
    )
    return _HEADER.pack(_VERSION) + b"".join(_ENTRY.pack(*entry) for entry in mapped)
