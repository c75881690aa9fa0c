"""The directories `bbackup mount` makes up above the snapshots' own trees, as restic's
mount does: `snapshots/<time>/`, `hosts/<host>/<time>/`, `tags/<tag>/<time>/`,
`ids/<short id>/`, and a `latest` symlink beside each list of times. Pure: snapshots in,
a tree of names out."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from bbackup.snapshot.model import Snapshot

#: The name of the symlink to the newest snapshot of a directory of snapshots.
LATEST = "latest"


@dataclass(frozen=True, slots=True)
class LatestLink:
    """A `latest` symlink: its target (a sibling's name) and that snapshot's time."""

    target: str
    mtime_ns: int


@dataclass(slots=True)
class VirtualDir:
    """A directory of the mount's own making: its entries by name (directories, snapshots
    whose trees hang there, `latest` links) and the time of the newest snapshot below it."""

    entries: dict[str, VirtualDir | Snapshot | LatestLink] = field(default_factory=dict)
    mtime_ns: int = 0


def snapshot_time_ns(snapshot: Snapshot) -> int:
    return int(snapshot.time.timestamp()) * 1_000_000_000 + snapshot.time.microsecond * 1000


def time_name(when: datetime) -> str:
    """A snapshot's directory name: its time to the second in this machine's time zone
    (`2026-12-07T09:35:15+01:00`), as restic's mount names them."""
    return when.astimezone().isoformat(timespec="seconds")


def entry_name(text: str) -> str | None:
    """`text` (a host or tag) as one path component; None if it cannot be one (empty, or
    `.`/`..`). A `/` becomes `_`, as a name cannot hold it."""
    name = text.replace("/", "_").replace("\0", "_")
    return None if name in ("", ".", "..") else name


def snapshots_by_time(snapshots: Iterable[Snapshot]) -> VirtualDir:
    """One directory per snapshot named by its time, oldest first; snapshots of the same
    second get `-1`, `-2`… in ID order; `latest` links to the newest."""
    directory = VirtualDir()
    newest: tuple[int, str, str] | None = None
    for snapshot in sorted(snapshots, key=lambda s: (s.time, s.id)):
        base = time_name(snapshot.time)
        name, n = base, 0
        while name in directory.entries or name == LATEST:
            n += 1
            name = f"{base}-{n}"
        directory.entries[name] = snapshot
        when = snapshot_time_ns(snapshot)
        if newest is None or (when, snapshot.id) >= newest[:2]:
            newest = (when, snapshot.id, name)
    if newest is not None:
        directory.entries[LATEST] = LatestLink(newest[2], newest[0])
        directory.mtime_ns = newest[0]
    return directory


def build_namespace(snapshots: Sequence[Snapshot]) -> VirtualDir:
    """The mount's root: `snapshots/`, `hosts/`, `tags/` and `ids/`."""
    hosts: dict[str, list[Snapshot]] = {}
    tags: dict[str, list[Snapshot]] = {}
    for snapshot in snapshots:
        host = entry_name(snapshot.host)
        if host is not None:
            hosts.setdefault(host, []).append(snapshot)
        for tag in dict.fromkeys(t for t in map(entry_name, snapshot.tags) if t is not None):
            tags.setdefault(tag, []).append(snapshot)
    newest = max((snapshot_time_ns(s) for s in snapshots), default=0)

    def grouped(groups: dict[str, list[Snapshot]]) -> VirtualDir:
        dirs = {name: snapshots_by_time(members) for name, members in sorted(groups.items())}
        return VirtualDir(dict(dirs), max((d.mtime_ns for d in dirs.values()), default=0))

    # A short ID shared by two snapshots would hide one: those go by their full IDs.
    shorts = Counter(s.short_id for s in snapshots)
    ids: dict[str, VirtualDir | Snapshot | LatestLink] = {
        (s.short_id if shorts[s.short_id] == 1 else s.id): s for s in snapshots
    }
    return VirtualDir(
        {
            "snapshots": snapshots_by_time(snapshots),
            "hosts": grouped(hosts),
            "tags": grouped(tags),
            "ids": VirtualDir(dict(sorted(ids.items())), newest),
        },
        newest,
    )
