"""The directories `mount` makes up from snapshots (by time, host, tag and ID, with
`latest` links), and which blob slices a byte range of a file needs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bbackup.ops.mount_content import FileLayout
from bbackup.ops.mount_namespace import (
    LATEST,
    LatestLink,
    VirtualDir,
    build_namespace,
    time_name,
)
from bbackup.snapshot.model import Snapshot

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def snap(
    snapshot_id: str, when: datetime, host: str = "alpha", tags: list[str] | None = None
) -> Snapshot:
    return Snapshot(when, host, ["/data"], b"\0" * 32, tags=tags or [], id=snapshot_id)


def entries(directory: object) -> dict[str, object]:
    assert isinstance(directory, VirtualDir)
    return directory.entries


def test_snapshots_by_time_host_tag_and_id_with_latest_links() -> None:
    a = snap("aa" * 32, T0, tags=["daily"])
    b = snap("bb" * 32, T0 + timedelta(days=1), host="beta", tags=["daily", "weekly"])
    c = snap("cc" * 32, T0 + timedelta(days=2))
    root = build_namespace([c, a, b])
    assert list(entries(root)) == ["snapshots", "hosts", "tags", "ids"]
    by_time = entries(root.entries["snapshots"])
    assert by_time == {
        time_name(a.time): a,
        time_name(b.time): b,
        time_name(c.time): c,
        LATEST: LatestLink(time_name(c.time), int(c.time.timestamp()) * 10**9),
    }
    hosts = entries(root.entries["hosts"])
    assert list(entries(hosts["alpha"])) == [time_name(a.time), time_name(c.time), LATEST]
    assert entries(hosts["beta"])[LATEST] == LatestLink(
        time_name(b.time), int(b.time.timestamp()) * 10**9
    )
    tags = entries(root.entries["tags"])
    assert list(tags) == ["daily", "weekly"]
    assert list(entries(tags["daily"]))[:2] == [time_name(a.time), time_name(b.time)]
    assert entries(root.entries["ids"]) == {"aaaaaaaa": a, "bbbbbbbb": b, "cccccccc": c}
    assert root.mtime_ns == int(c.time.timestamp()) * 10**9


def test_snapshots_of_the_same_second_and_short_id_stay_apart() -> None:
    first = snap("ab" * 32, T0)
    second = snap("ab" * 16 + "cd" * 16, T0.replace(microsecond=500))
    root = build_namespace([second, first])
    name = time_name(T0)
    by_time = entries(root.entries["snapshots"])
    assert by_time[name] is first and by_time[f"{name}-1"] is second
    assert by_time[LATEST] == LatestLink(f"{name}-1", int(T0.timestamp()) * 10**9 + 500_000)
    assert set(entries(root.entries["ids"])) == {first.id, second.id}


def test_hosts_and_tags_that_cannot_be_names_are_made_safe_or_left_out() -> None:
    root = build_namespace([snap("aa" * 32, T0, host="a/b", tags=["", "..", "x/y"])])
    assert list(entries(root.entries["hosts"])) == ["a_b"]
    assert list(entries(root.entries["tags"])) == ["x_y"]


def test_no_snapshots_gives_empty_directories_without_latest() -> None:
    root = build_namespace([])
    assert all(entries(d) == {} for d in root.entries.values())


def test_a_range_needs_only_the_blob_slices_that_hold_it() -> None:
    layout = FileLayout((b"a", b"b", b"c"), (100, 250, 300))
    assert layout.size == 300
    assert layout.spans(0, 10) == [(b"a", 0, 10)]
    assert layout.spans(95, 10) == [(b"a", 95, 100), (b"b", 0, 5)]
    assert layout.spans(100, 150) == [(b"b", 0, 150)]
    assert layout.spans(120, 1000) == [(b"b", 20, 150), (b"c", 0, 50)]
    assert layout.spans(300, 10) == []
    assert FileLayout((), ()).spans(0, 4096) == []
