"""Thawing archived packs for a read: find which of the packs a restore or check needs
sit in GLACIER or DEEP_ARCHIVE, estimate what restoring them costs, request restores for
those not yet requested, and wait (polling each pending pack's restore state with backoff)
until all are readable.

Reads come first: the thaw starts when a read meets an archived pack (`ThawOnArchivedRead`),
so a repository with nothing archived pays no request for it. Only `data/` packs ever
leave the hot tier (DESIGN §4), so everything that decides which packs are needed
(snapshots, trees, index) is read without a thaw. A re-run finds the restores already
under way by their state and requests nothing twice.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from bbackup.errors import NotFound
from bbackup.ops.cost_estimates import ArchivedObject, ThawEstimate, estimate_thaw
from bbackup.ops.pricing import PriceTable
from bbackup.ops.restore_select import PathFilter, select_entries
from bbackup.repository import BlobLoader, pack_object_name
from bbackup.snapshot.model import Snapshot
from bbackup.storage import ARCHIVE_CLASSES, ObjectInfo, StorageProfile

#: Seconds between two looks at the restores still pending, at first (S3 restores take
#: minutes with the expedited tier, hours otherwise). The interval doubles after every
#: look, up to 16 times the first and at most MAX_POLL_SECONDS.
DEFAULT_POLL_SECONDS = 60.0
MAX_POLL_SECONDS = 900.0
#: Needed packs up to this many are looked up with a HEAD each rather than a listing.
HEAD_INSTEAD_OF_LISTING = 64
#: Restore requests and state HEADs in flight at once (the storage limiter bounds it too).
_CONCURRENT_REQUESTS = 16

T = TypeVar("T")
R = TypeVar("R")


class ArchivedPackSource(Protocol):
    """What a thaw needs of the repository: the stored packs with their storage classes,
    one pack's restore state, and restore requests."""

    #: Called by a pack read that met an archived pack (`ThawOnArchivedRead` plays it).
    on_archived_read: Callable[[str], Awaitable[None]] | None

    @property
    def profile(self) -> StorageProfile: ...

    async def list_packs(self, prefixes: tuple[str, ...] = ...) -> list[ObjectInfo]: ...

    async def stat_pack(self, name: str) -> ObjectInfo: ...

    async def request_pack_restore(self, name: str, days: int, tier: str) -> None: ...


@dataclass(frozen=True, slots=True)
class ThawOptions:
    """How to thaw: the S3 restore tier, the days the readable copy is kept, whether to
    wait for the restores, and how often to look at them."""

    tier: str = "bulk"
    days: int = 3
    wait: bool = True
    poll_seconds: float = DEFAULT_POLL_SECONDS

    @property
    def max_poll_seconds(self) -> float:
        return max(self.poll_seconds, min(MAX_POLL_SECONDS, 16 * self.poll_seconds))


@dataclass(slots=True)
class ThawSurvey:
    """The packs a read needs, as the store describes them, and what thawing them costs."""

    #: Every needed pack that is stored (archived or not), with its restore state.
    objects: list[ArchivedObject]
    estimate: ThawEstimate

    @property
    def archived(self) -> list[ArchivedObject]:
        """Needed packs that cannot be read until a restore of them completes."""
        return [
            o
            for o in self.objects
            if o.storage_class in ARCHIVE_CLASSES and o.restore_state != "restored"
        ]

    @property
    def to_request(self) -> list[ArchivedObject]:
        return [o for o in self.archived if o.restore_state is None]


@dataclass(slots=True)
class ThawProgress:
    """Where a wait stands, for the progress display."""

    packs: int = 0
    bytes: int = 0
    ready: int = 0
    bytes_ready: int = 0
    requested: int = 0
    next_look_seconds: float = 0.0
    started: float = field(default_factory=time.monotonic)


async def survey_packs(
    repo: ArchivedPackSource,
    names: Collection[str],
    prices: PriceTable,
    *,
    tier: str,
    days: int,
    now: float | None = None,
) -> ThawSurvey:
    """Look up the needed packs `names`: their storage class from one listing and the
    restore state of the archived ones from a HEAD each (a few packs: a HEAD each and no
    listing). Nothing is requested."""
    now = time.time() if now is None else now
    wanted = set(names)
    if len(wanted) <= HEAD_INSTEAD_OF_LISTING:
        # A few packs (one file of a large repository): a HEAD each says everything, where
        # a listing would page through every pack.
        found = await _bounded(_stat_if_present(repo), sorted(wanted))
        listed = {info.name: info for info in found if info is not None}
        states = dict(listed)
    else:
        # tree/ is listed only when a tree pack is wanted (check --read-data): a restore
        # reads data packs only.
        trees = any(name.startswith("tree/") for name in wanted)
        stored = await repo.list_packs(("data/", "tree/") if trees else ("data/",))
        listed = {info.name: info for info in stored if info.name in wanted}
        archived = [i.name for i in listed.values() if i.storage_class in ARCHIVE_CLASSES]
        # A listing does not say whether a restore is under way; a HEAD of the archived does.
        states = dict(zip(archived, await _bounded(repo.stat_pack, archived), strict=True))
    objects = [
        ArchivedObject(
            info.name,
            info.size,
            info.storage_class,
            age_seconds=max(0.0, now - info.mtime),
            restore_state=states[info.name].restore_state if info.name in states else None,
        )
        for info in sorted(listed.values(), key=lambda i: i.name)
    ]
    estimate = estimate_thaw(objects, prices, tier=tier, days=days, archive_classes=ARCHIVE_CLASSES)
    return ThawSurvey(objects, estimate)


def _stat_if_present(
    repo: ArchivedPackSource,
) -> Callable[[str], Awaitable[ObjectInfo | None]]:
    async def stat(name: str) -> ObjectInfo | None:
        try:
            return await repo.stat_pack(name)
        except NotFound:
            return None  # the read reports it, as it would without a thaw

    return stat


async def request_restores(
    repo: ArchivedPackSource, survey: ThawSurvey, options: ThawOptions
) -> list[ArchivedObject]:
    """Request a restore of every needed archived pack not already requested; return them.

    A restore another process requested meanwhile is answered "already in progress",
    which the store's backend treats as done."""
    pending = survey.to_request

    async def request(obj: ArchivedObject) -> None:
        await repo.request_pack_restore(obj.name, options.days, options.tier)

    await _bounded(request, pending)
    return pending


async def wait_for_restores(
    repo: ArchivedPackSource,
    survey: ThawSurvey,
    options: ThawOptions,
    *,
    requested: int = 0,
    on_progress: Callable[[ThawProgress], None] | None = None,
) -> ThawProgress:
    """Wait until every needed archived pack is readable, looking at the pending ones
    (one HEAD each) with a doubling interval; return the final progress."""
    pending = {o.name: o for o in survey.archived}
    progress = ThawProgress(
        packs=len(pending), bytes=sum(o.size for o in pending.values()), requested=requested
    )
    interval = options.poll_seconds
    while pending:
        progress.next_look_seconds = interval
        if on_progress is not None:
            on_progress(progress)
        await asyncio.sleep(interval)
        names = list(pending)
        lost = []
        for name, info in zip(names, await _bounded(repo.stat_pack, names), strict=True):
            if not info.archived:
                progress.ready += 1
                progress.bytes_ready += pending.pop(name).size
            elif info.restore_state is None:
                lost.append(name)
        if lost:
            # Neither under way nor ready: the restored copy expired before this run got
            # to it, or the request never took. Ask again rather than wait forever.
            await _bounded(lambda n: repo.request_pack_restore(n, options.days, options.tier), lost)
            progress.requested += len(lost)
        interval = min(interval * 2, options.max_poll_seconds)
    progress.next_look_seconds = 0.0
    if on_progress is not None:
        on_progress(progress)
    return progress


#: The packs a command will read, or how to find them: a restore finds them by walking
#: its trees, which only the first archived read (or a dry run) needs.
PackNames = Collection[str] | Callable[[], Awaitable[Collection[str]]]


async def pack_names(names: PackNames) -> Collection[str]:
    """The pack names `names` gives, found now if it is a way to find them."""
    return await names() if callable(names) else names


class ThawOnArchivedRead:
    """The handler a repository calls when a pack read meets an archived pack: the first
    call thaws every pack the command will read (`names`, one survey and one estimate for
    all), concurrent callers wait for that one thaw, and a pack still archived afterwards
    (its restored copy expired, or it was never in `names`) is thawed on its own."""

    def __init__(self, names: PackNames, thaw: Callable[[set[str]], Awaitable[None]]):
        self._names = names
        self._thaw = thaw
        self._thawed: set[str] = set()
        self._thaws_done = 0
        self._lock = asyncio.Lock()

    async def __call__(self, name: str) -> None:
        seen = self._thaws_done
        async with self._lock:
            if self._thaws_done != seen and name in self._thawed:
                return  # thawed while this read waited for the lock: read it again
            wanted = {name} if self._thawed else set(await pack_names(self._names)) | {name}
            await self._thaw(wanted)
            self._thawed |= wanted
            self._thaws_done += 1


async def _bounded(
    call: Callable[[T], Awaitable[R]], items: Iterable[T], limit: int = _CONCURRENT_REQUESTS
) -> list[R]:
    """`call` on every item, at most `limit` at once; the results in the items' order."""
    slots = asyncio.Semaphore(limit)

    async def one(item: T) -> R:
        async with slots:
            return await call(item)

    return list(await asyncio.gather(*(one(item) for item in items)))


# ---- which packs a restore needs -------------------------------------------------------


async def packs_for_restore(
    loader: BlobLoader,
    snapshot: Snapshot,
    path_filter: PathFilter,
    leave_out: Callable[[bytes], bool] | None = None,
) -> set[str]:
    """The data packs holding the content of every file a restore of `snapshot` writes,
    selected by `path_filter` exactly as the Restorer selects them (the same walk),
    leaving out blobs `leave_out` names (copy: those the target holds already).

    Trees come from the hot tier and the local cache; no data pack is read. A blob the
    index lacks is left to the restore, which reports the file as damaged."""
    selection = await select_entries(loader, snapshot, path_filter)
    index = loader.index
    packs: set[str] = set()
    for _, entry in selection.root.files():
        for blob_id in entry.content:
            if index.has(blob_id) and not (leave_out and leave_out(blob_id)):
                found = index.lookup(blob_id)
                packs.add(pack_object_name(found.blob_type, found.pack_id))
    return packs
