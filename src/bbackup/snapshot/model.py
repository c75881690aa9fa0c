"""Node, Tree and Snapshot models and their deterministic msgpack serialization.

A tree is one directory listing: nodes sorted by name, each with its metadata and either
a content list (files) or a subtree ID (directories). Names and symlink targets are
bytes, so names that are not UTF-8 survive. Fields at their default are omitted, so an
unchanged directory serializes to the same bytes and deduplicates.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgpack

from bbackup.errors import IntegrityError

FILE = "file"
DIR = "dir"
SYMLINK = "symlink"
CHARDEV = "chardev"
BLOCKDEV = "blockdev"
FIFO = "fifo"
SOCKET = "socket"

# Short keys keep trees small; the mapping is part of the format (docs/format.md).
_KEYS = {
    "name": "n",
    "type": "t",
    "mode": "m",
    "uid": "u",
    "gid": "g",
    "user": "U",
    "group": "G",
    "mtime_ns": "mt",
    "atime_ns": "at",
    "ctime_ns": "ct",
    "size": "s",
    "inode": "i",
    "device": "d",
    "nlink": "l",
    "link_target": "L",
    "rdev": "r",
    "xattrs": "x",
    "holes": "h",
    "acl_names": "A",
    "content": "c",
    "subtree": "T",
}
_FIELDS = {short: long for long, short in _KEYS.items()}


class _NoItems(list[Any]):
    """The one empty list every decoded node without xattrs, holes, ACL names or content
    shares: four empty lists a node were a quarter of a decoded tree's memory (a restore
    holds every node it plans). Equal to `[]`; any change to it raises."""

    def _refuse(self, *_args: object, **_kwargs: object) -> Any:
        raise TypeError("a decoded node's empty lists are shared and cannot change")

    append = extend = insert = remove = pop = clear = sort = reverse = _refuse
    __setitem__ = __delitem__ = __iadd__ = __imul__ = _refuse


_NO_ITEMS: list[Any] = _NoItems()


@dataclass(slots=True)
class Node:
    """One directory entry and its metadata."""

    name: bytes
    type: str
    mode: int = 0
    uid: int = 0
    gid: int = 0
    user: str = ""
    group: str = ""
    mtime_ns: int = 0
    atime_ns: int = 0
    ctime_ns: int = 0
    size: int = 0
    inode: int = 0
    device: int = 0
    nlink: int = 1
    link_target: bytes = b""
    rdev: int = 0
    xattrs: list[tuple[bytes, bytes]] = field(default_factory=list)
    #: (offset, length) of each hole of a sparse file, in order: restore leaves these
    #: unwritten where the content is zeros there. Content still covers the whole file.
    holes: list[tuple[int, int]] = field(default_factory=list)
    #: (ACL tag, id, name) of the users (tag 2) and groups (tag 8) the ACLs in `xattrs`
    #: name, where the backing-up machine had a name for the id: restore goes by name.
    acl_names: list[tuple[int, int, str]] = field(default_factory=list)
    content: list[bytes] = field(default_factory=list)
    subtree: bytes | None = None

    def to_wire(self) -> dict[str, Any]:
        """The node as stored: short keys, fields at their default left out, in the
        order of WIRE_FIELDS (the order is part of the bytes, which deduplicate).

        Spelled out rather than looped over WIRE_FIELDS: every tree of a backup is
        encoded, and this is twice as fast; tests check the two agree.
        """
        wire: dict[str, Any] = {"n": self.name, "t": self.type}
        if self.mode:
            wire["m"] = self.mode
        if self.uid:
            wire["u"] = self.uid
        if self.gid:
            wire["g"] = self.gid
        if self.user:
            wire["U"] = self.user
        if self.group:
            wire["G"] = self.group
        if self.mtime_ns:
            wire["mt"] = self.mtime_ns
        if self.atime_ns:
            wire["at"] = self.atime_ns
        if self.ctime_ns:
            wire["ct"] = self.ctime_ns
        if self.size:
            wire["s"] = self.size
        if self.inode:
            wire["i"] = self.inode
        if self.device:
            wire["d"] = self.device
        if self.nlink != 1:
            wire["l"] = self.nlink
        if self.link_target:
            wire["L"] = self.link_target
        if self.rdev:
            wire["r"] = self.rdev
        if self.xattrs:
            wire["x"] = self.xattrs
        if self.holes:
            wire["h"] = self.holes
        if self.acl_names:
            wire["A"] = self.acl_names
        if self.content:
            wire["c"] = self.content
        if self.subtree is not None:
            wire["T"] = self.subtree
        return wire

    @classmethod
    def from_wire(cls, wire: dict[str, Any]) -> Node:
        # Spelled out rather than looped over _FIELDS, and positional: an unchanged backup
        # decodes every node of the parent snapshot, and keywords cost more than the rest
        # of the call. The order is POSITIONAL_FIELDS (a test holds it to the class's).
        # Unknown keys are ignored.
        get = wire.get
        xattrs = get("x")
        holes = get("h")
        acl_names = get("A")
        content = get("c")
        node = cls(
            wire["n"],  # name
            # Interned: the same few names on every node, one copy each in memory.
            sys.intern(wire["t"]),  # type
            get("m", 0),  # mode
            get("u", 0),  # uid
            get("g", 0),  # gid
            sys.intern(get("U", "")),  # user
            sys.intern(get("G", "")),  # group
            get("mt", 0),  # mtime_ns
            get("at", 0),  # atime_ns
            get("ct", 0),  # ctime_ns
            get("s", 0),  # size
            get("i", 0),  # inode
            get("d", 0),  # device
            get("l", 1),  # nlink
            get("L", b""),  # link_target
            get("r", 0),  # rdev
            [(k, v) for k, v in xattrs] if xattrs else _NO_ITEMS,  # xattrs
            [(o, n) for o, n in holes] if holes else _NO_ITEMS,  # holes
            [(t, i, n) for t, i, n in acl_names] if acl_names else _NO_ITEMS,  # acl_names
            list(content) if content else _NO_ITEMS,  # content (msgpack bin is bytes)
            get("T"),  # subtree
        )
        if not _well_typed(node):
            raise TypeError("a tree node has a field of the wrong type")
        return node

    @property
    def display_name(self) -> str:
        return self.name.decode("utf-8", "backslashreplace")


def _well_typed(node: Node) -> bool:
    """Every field of a decoded node has its declared type: a tree is authenticated, but
    whoever holds the key writes it, and backup and restore rely on these types."""
    content, xattrs, holes, subtree = node.content, node.xattrs, node.holes, node.subtree
    acl_names = node.acl_names
    return (
        type(node.name) is type(node.link_target) is bytes
        and type(node.type) is type(node.user) is type(node.group) is str
        and type(node.mode) is type(node.uid) is type(node.gid) is int
        and type(node.mtime_ns) is type(node.atime_ns) is type(node.ctime_ns) is int
        and type(node.size) is type(node.inode) is type(node.device) is int
        and type(node.nlink) is type(node.rdev) is int
        and (not content or (set(map(type, content)) <= _BYTES and set(map(len, content)) <= _ID))
        and (not xattrs or all(type(k) is type(v) is bytes for k, v in xattrs))
        and (not holes or all(type(o) is type(n) is int and o >= 0 and n > 0 for o, n in holes))
        and (
            not acl_names
            or all(type(t) is type(i) is int and type(n) is str for t, i, n in acl_names)
        )
        and (subtree is None or (type(subtree) is bytes and len(subtree) == 32))
    )


_BYTES = frozenset([bytes])
_ID = frozenset([32])


#: Node's fields in the order of its constructor's positional parameters, which
#: `Node.from_wire` and `ops.scan.node_from_stat` pass positionally.
POSITIONAL_FIELDS = (
    "name", "type", "mode", "uid", "gid", "user", "group", "mtime_ns", "atime_ns",
    "ctime_ns", "size", "inode", "device", "nlink", "link_target", "rdev", "xattrs",
    "holes", "acl_names", "content", "subtree",
)  # fmt: skip

#: (field, wire key, default) for every optional Node field, in wire order: what
#: `Node.to_wire` spells out.
WIRE_FIELDS: list[tuple[str, str, Any]] = [
    (
        f.name,
        _KEYS[f.name],
        f.default if f.default_factory is dataclasses.MISSING else f.default_factory(),
    )
    for f in dataclasses.fields(Node)
    if f.name not in ("name", "type")
]


def is_safe_name(name: bytes) -> bool:
    """Whether a tree entry's name is one path component: not empty, `.` or `..`, and
    without `/` or NUL. Only a damaged or forged tree holds another; used as a path, it
    could lead out of a directory."""
    return b"/" not in name and b"\0" not in name and name not in (b"", b".", b"..")


@dataclass(slots=True)
class Tree:
    """One directory's entries, sorted by name."""

    nodes: list[Node] = field(default_factory=list)

    def to_bytes(self) -> bytes:
        nodes = sorted(self.nodes, key=lambda n: n.name)
        packed: bytes = msgpack.packb([n.to_wire() for n in nodes], use_bin_type=True)
        return packed

    @classmethod
    def from_bytes(cls, data: bytes) -> Tree:
        try:
            wires = msgpack.unpackb(data, raw=False)
            if type(wires) is not list:
                raise TypeError("a tree is a list of nodes")
            return cls([Node.from_wire(w) for w in wires])
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise IntegrityError("tree blob is malformed") from exc

    def find(self, name: bytes) -> Node | None:
        for node in self.nodes:
            if node.name == name:
                return node
        return None


@dataclass(slots=True)
class Snapshot:
    """A point-in-time, independently restorable view of the backed-up paths."""

    time: datetime
    host: str
    paths: list[str]
    tree: bytes
    user: str = ""
    tags: list[str] = field(default_factory=list)
    backup_type: str = "incremental"
    parent: str | None = None
    base: str | None = None
    program_version: str = ""
    excludes: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    #: For a copy made by `bbackup copy`: the ID of the snapshot first backed up (kept
    #: through copies of copies); None for a snapshot made by a backup.
    original: str | None = None
    #: The snapshot's ID (SHA-256 of its stored bytes); set once stored or loaded.
    id: str = ""

    def to_bytes(self) -> bytes:
        wire = {
            "time": self.time.isoformat(),
            "host": _text_to_wire(self.host),
            "user": _text_to_wire(self.user),
            "paths": [_text_to_wire(p) for p in self.paths],
            "tags": [_text_to_wire(t) for t in self.tags],
            "tree": self.tree,
            "type": self.backup_type,
            "parent": self.parent,
            "base": self.base,
            "program_version": self.program_version,
            "excludes": [_text_to_wire(e) for e in self.excludes],
            "summary": self.summary,
        }
        if self.original is not None:  # absent from others: their bytes (IDs) stay as ever
            wire["original"] = self.original
        packed: bytes = msgpack.packb(wire, use_bin_type=True)
        return packed

    @classmethod
    def from_bytes(cls, data: bytes, snapshot_id: str = "") -> Snapshot:
        try:
            w = msgpack.unpackb(data, raw=False)
            if type(w) is not dict:
                raise TypeError("a snapshot is a map")
            snapshot = cls(
                time=datetime.fromisoformat(w["time"]),
                host=_text_from_wire(w["host"]),
                user=_text_from_wire(w.get("user", "")),
                paths=_texts_from_wire(w["paths"]),
                tags=_texts_from_wire(w.get("tags", [])),
                tree=w["tree"],
                backup_type=w.get("type", "incremental"),
                parent=w.get("parent"),
                base=w.get("base"),
                program_version=w.get("program_version", ""),
                excludes=_texts_from_wire(w.get("excludes", [])),
                summary=w.get("summary", {}),
                original=w.get("original"),
                id=snapshot_id,
            )
            if not _snapshot_well_typed(snapshot):
                raise TypeError("a snapshot field has the wrong type")
        except (ValueError, TypeError, KeyError) as exc:
            raise IntegrityError(f"snapshot {snapshot_id[:8]} is malformed") from exc
        return snapshot

    @property
    def short_id(self) -> str:
        return self.id[:8]


def _text_to_wire(text: str) -> str | bytes:
    """A path, pattern, tag or name as stored: a string, or its bytes where it is not
    UTF-8 (a file name or argument decoded with surrogate escapes), which msgpack cannot
    store as a string."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(text)
    return text


def _text_from_wire(value: Any) -> Any:
    return os.fsdecode(value) if type(value) is bytes else value


def _texts_from_wire(values: Any) -> Any:
    return [_text_from_wire(v) for v in values] if type(values) is list else values


def _snapshot_well_typed(s: Snapshot) -> bool:
    """Every field of a decoded snapshot has its declared type, its time a time zone (times
    are compared), and its summary is JSON (`snapshots --json` prints it)."""
    return (
        s.time.utcoffset() is not None
        and type(s.host) is type(s.user) is type(s.backup_type) is type(s.program_version) is str
        and all(
            type(x) is list and set(map(type, x)) <= {str} for x in (s.paths, s.tags, s.excludes)
        )
        and type(s.tree) is bytes
        and len(s.tree) == 32
        and all(x is None or type(x) is str for x in (s.parent, s.base, s.original))
        and type(s.summary) is dict
        and _json_like(s.summary)
    )


def _json_like(value: object, depth: int = 0) -> bool:
    """A value JSON can hold, nested at most 8 deep."""
    if value is None or type(value) in (bool, int, float, str):
        return True
    if depth >= 8:
        return False
    if type(value) is list:
        return all(_json_like(v, depth + 1) for v in value)
    if type(value) is dict:
        return all(type(k) is str and _json_like(v, depth + 1) for k, v in value.items())
    return False
