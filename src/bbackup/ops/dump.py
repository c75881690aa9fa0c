"""`bbackup dump`: one file of a snapshot as its bytes, or a subtree as a tar or zip
stream, written front to back to a stream that need not be seekable (stdout).

The trees are walked first. Then the stream is cut into stretches of about 16 MiB, and
each stretch's blobs are fetched as restore fetches a whole restore (`plan_reads`: each
pack's needed blobs in pack order, neighbours in one ranged read, each blob once), a few
stretches ahead of the writer, decoded in worker threads; one thread writes the archive,
taking the blobs in stream order.
"""

from __future__ import annotations

import asyncio
import os
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import BinaryIO

from bbackup.errors import IntegrityError, NotFound, UsageError
from bbackup.ops.dump_archive import archive_writer
from bbackup.ops.restore_reads import (
    MAX_BYTES_IN_FLIGHT,
    MAX_RANGE_GAP,
    NeededBlob,
    PackRead,
    plan_reads,
)
from bbackup.repository import BlobLoader, Index, pack_object_name
from bbackup.snapshot.model import DIR, FILE, Node, Snapshot, is_safe_name
from bbackup.snapshot.store import load_tree


class PathNotInSnapshot(UsageError):
    """The path is not in the snapshot."""


@dataclass(slots=True)
class DumpEntry:
    """One entry of the stream: its absolute path in the snapshot, its node, the bytes of
    its content (from the index), and for a tar hard link the path it links to."""

    path: bytes
    node: Node
    size: int = 0
    link_to: bytes | None = None


@dataclass(slots=True)
class DumpSummary:
    """What a dump wrote: `kind` is "file", "tar" or "zip"."""

    kind: str
    entries: int = 0
    bytes: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)


async def find_entry(loader: BlobLoader, snapshot: Snapshot, path: str) -> DumpEntry | None:
    """The entry at `path` (absolute or not, as `ls` shows it); None for the snapshot's
    root; PathNotInSnapshot if there is none."""
    parts = [p for p in os.fsencode(path).split(b"/") if p not in (b"", b".")]
    if not parts:
        return None
    tree_id: bytes | None = snapshot.tree
    node: Node | None = None
    for part in parts:
        if tree_id is None or not is_safe_name(part):  # `..` names no parent in a tree
            break
        node = (await load_tree(loader, tree_id)).find(part)
        if node is None:
            break
        tree_id = node.subtree if node.type == DIR else None
    else:
        assert node is not None
        return DumpEntry(b"/" + b"/".join(parts), node)
    raise PathNotInSnapshot(f"{path}: no such file or directory in snapshot {snapshot.short_id}")


def unsafe_name(name: bytes, seen: set[bytes]) -> str | None:
    """Why a tree entry's name cannot be an archive member, or None: a name must be one
    path component, and appear once in its tree. Only a damaged or forged tree holds
    such a name; as a member it could lead an extracting tar out of its directory (`..`,
    `/`), or through a symlink member of the same name (tar-slip)."""
    if not is_safe_name(name):
        return f"refusing unsafe name {name!r} in snapshot tree; left out"
    if name in seen:
        return f"refusing a second entry named {name!r} in one snapshot tree; left out"
    seen.add(name)
    return None


async def walk_entries(
    loader: BlobLoader,
    top: DumpEntry | None,
    root_tree: bytes,
    refused: list[tuple[bytes, str]] | None = None,
) -> list[DumpEntry]:
    """`top` and everything below it (the whole snapshot when `top` is None), each
    directory before its contents, siblings by name. An explicit stack, not recursion:
    paths may be thousands of directories deep. An entry with an unsafe name
    (`unsafe_name`) is left out, with all below it, and added to `refused`."""
    out: list[DumpEntry] = []
    pending: list[DumpEntry] = []

    async def push_children(tree_id: bytes, prefix: bytes) -> None:
        tree = await load_tree(loader, tree_id)
        nodes: list[Node] = []
        seen: set[bytes] = set()
        for node in sorted(tree.nodes, key=lambda n: n.name):
            problem = unsafe_name(node.name, seen)
            if problem is None:
                nodes.append(node)
            elif refused is not None:
                refused.append((prefix or b"/", problem))
        pending.extend(DumpEntry(prefix + b"/" + n.name, n) for n in reversed(nodes))

    if top is None:
        await push_children(root_tree, b"")
    else:
        pending.append(top)
    while pending:
        entry = pending.pop()
        out.append(entry)
        if entry.node.type == DIR and entry.node.subtree is not None:
            await push_children(entry.node.subtree, entry.path)
    return out


def plan_content(index: Index, entries: list[DumpEntry], *, hard_links: bool) -> list[bytes]:
    """Set each file's size from the index and, with `hard_links` (tar), which earlier
    entry each further path of a hard-linked file links to; return the blob IDs the
    stream needs, in stream order."""
    first_path: dict[tuple[int, int], bytes] = {}
    blob_ids: list[bytes] = []
    for entry in entries:
        node = entry.node
        if node.type != FILE:
            continue
        entry.size = sum(index.lookup(blob_id).raw_length for blob_id in node.content)
        if hard_links and node.nlink > 1:
            key = (node.device, node.inode)
            if key in first_path:
                entry.link_to = first_path[key]
                continue
            first_path[key] = entry.path
        blob_ids.extend(node.content)
    return blob_ids


#: Plaintext bytes of one stretch of the stream whose reads are planned together.
BATCH_BYTES = 16 * 1024 * 1024


@dataclass(slots=True)
class StreamBatch:
    """A stretch of the stream: its blob IDs in stream order (repeats included), and the
    ranged reads that fetch each of them once, planned pack by pack in pack order."""

    blob_ids: list[bytes]
    reads: list[PackRead]


def plan_batches(
    index: Index,
    blob_ids: list[bytes],
    *,
    max_gap: int,
    max_bytes: int | None,
    batch_bytes: int = BATCH_BYTES,
) -> list[StreamBatch]:
    """Cut the stream into stretches of about `batch_bytes` of plaintext and plan each
    one's reads as restore plans a whole restore (`plan_reads`): the order in which a
    backup packed blobs is seldom the order of names in a tree, so a stretch is read in
    pack order and handed out in stream order."""
    batches: list[StreamBatch] = []
    needed: dict[bytes, NeededBlob] = {}
    ids: list[bytes] = []
    size = 0

    def close_batch() -> None:
        by_pack: dict[str, list[NeededBlob]] = {}
        for blob in needed.values():
            by_pack.setdefault(blob.entry.pack_id, []).append(blob)
        reads = [
            read
            for blobs in by_pack.values()
            for read in plan_reads(blobs, max_gap=max_gap, max_bytes=max_bytes)
        ]
        batches.append(StreamBatch(list(ids), reads))
        needed.clear()
        ids.clear()

    for blob_id in blob_ids:
        if blob_id not in needed:
            entry = index.lookup(blob_id)
            needed[blob_id] = NeededBlob(blob_id, entry)
            size += entry.raw_length
        ids.append(blob_id)
        if size >= batch_bytes:
            close_batch()
            size = 0
    if ids:
        close_batch()
    return batches


class OrderedBlobReader:
    """The plaintext of planned batches, one batch at a time in stream order, with up to
    `window` batches fetched and decoded ahead and at most `connections` reads at once."""

    def __init__(
        self,
        loader: BlobLoader,
        batches: list[StreamBatch],
        *,
        window: int,
        connections: int,
        pool: ThreadPoolExecutor,
    ) -> None:
        self.loader = loader
        self.batches = deque(batches)
        self.window = max(1, window)
        self.slots = asyncio.Semaphore(max(1, connections))
        self.pool = pool
        self.pending: deque[asyncio.Task[list[bytes]]] = deque()
        self.closed = False

    def _fill(self) -> None:
        while not self.closed and self.batches and len(self.pending) < self.window:
            self.pending.append(asyncio.ensure_future(self._fetch(self.batches.popleft())))

    async def next_batch(self) -> list[bytes]:
        """The plaintexts of the next batch's blobs, in stream order."""
        if self.closed:  # the writer outlived the dump (cancelled): let it stop
            raise asyncio.CancelledError()
        self._fill()
        if not self.pending:
            raise IntegrityError("dump: the stream asked for more blobs than were planned")
        blobs = await self.pending.popleft()
        self._fill()
        return blobs

    async def _fetch(self, batch: StreamBatch) -> list[bytes]:
        plain: dict[bytes, bytes] = {}
        reads = [asyncio.ensure_future(self._fetch_read(read, plain)) for read in batch.reads]
        try:
            await asyncio.gather(*reads)
        finally:
            for read in reads:
                read.cancel()
            await asyncio.gather(*reads, return_exceptions=True)
        return [plain[blob_id] for blob_id in batch.blob_ids]

    async def _fetch_read(self, read: PackRead, plain: dict[bytes, bytes]) -> None:
        first = read.blobs[0].entry
        name = pack_object_name(first.blob_type, first.pack_id)
        async with self.slots:
            try:
                data = await self.loader.read_pack(name, read.start, read.end - read.start)
            except NotFound:
                # Missing data is an integrity error (exit 13), as for restore.
                raise IntegrityError(f"{name}: pack is missing") from None
        if len(data) != read.end - read.start:
            raise IntegrityError(f"pack {first.pack_id}: {name} is truncated")
        loop = asyncio.get_running_loop()
        plain.update(await loop.run_in_executor(self.pool, self._decode, data, read))

    def _decode(self, data: bytes, read: PackRead) -> dict[bytes, bytes]:
        view = memoryview(data)
        decoded = {}
        for blob in read.blobs:
            at = blob.entry.offset - read.start
            sealed = view[at : at + blob.entry.length]
            decoded[blob.blob_id] = self.loader.decode_blob(blob.blob_id, blob.entry, sealed)
        return decoded

    async def aclose(self) -> None:
        """Stop every read in flight, and start no more."""
        self.closed = True
        for task in self.pending:
            task.cancel()
        await asyncio.gather(*self.pending, return_exceptions=True)
        self.pending.clear()


class _BlobFeed:
    """The writer thread's side: blobs one at a time, each batch taken from the event
    loop when the one before is used up."""

    def __init__(self, next_batch: Callable[[], list[bytes]]) -> None:
        self._next_batch = next_batch
        self._blobs: deque[bytes] = deque()

    def content(self, node: Node) -> Iterator[bytes]:
        """A file's blobs (its node's content list), in order."""
        for _ in node.content:
            while not self._blobs:
                self._blobs.extend(self._next_batch())
            yield self._blobs.popleft()


async def dump(
    loader: BlobLoader,
    snapshot: Snapshot,
    path: str,
    sink: BinaryIO,
    *,
    archive: str | None = None,
    connections: int = 4,
    read_size: int | None = None,
    max_gap: int = MAX_RANGE_GAP,
    workers: int = 2,
    archive_allowed: bool = True,
    on_warning: Callable[[str, str], None] | None = None,
    before_reads: Callable[[Collection[str]], Awaitable[object]] | None = None,
) -> DumpSummary:
    """Write `path` of `snapshot` to `sink`: a regular file's bytes unless `archive`
    ("tar" or "zip") is asked for; anything else as a tar (default) or zip archive of it
    and everything below it, named by their paths in the snapshot without the leading
    "/". PathNotInSnapshot if there is no such path; UsageError if an archive it would
    be and `archive_allowed` is False (stdout is a terminal). On a failure the archive is
    left truncated (no end), so no reader takes it for whole. Entries with unsafe names
    (`unsafe_name`) are left out of a whole archive, then IntegrityError. `before_reads` is called
    with the packs the stream needs before any is read (to thaw those in an archive
    tier), before anything is written."""
    top = await find_entry(loader, snapshot, path)
    refused: list[tuple[bytes, str]] = []
    if archive is None and top is not None and top.node.type == FILE:
        summary = DumpSummary("file")
        entries = [top]
    else:
        summary = DumpSummary(archive or "tar")
        if not archive_allowed:
            raise UsageError(
                f"refusing to write a {summary.kind} archive to a terminal: "
                "redirect stdout to a file or a pipe"
            )
        entries = await walk_entries(loader, top, snapshot.tree, refused)
    index = loader.index
    blob_ids = plan_content(index, entries, hard_links=summary.kind == "tar")
    if before_reads is not None:
        needed = {index.lookup(b) for b in dict.fromkeys(blob_ids)}
        await before_reads({pack_object_name(e.blob_type, e.pack_id) for e in needed})
    batches = plan_batches(index, blob_ids, max_gap=max_gap, max_bytes=read_size)
    # A batch in flight holds its fetched ranges and its plaintext: bound both.
    window = max(2, MAX_BYTES_IN_FLIGHT // (2 * BATCH_BYTES))
    loop = asyncio.get_running_loop()
    pool = ThreadPoolExecutor(workers, thread_name_prefix="bb-dump")
    reader = OrderedBlobReader(loader, batches, window=window, connections=connections, pool=pool)
    feed = _BlobFeed(lambda: asyncio.run_coroutine_threadsafe(reader.next_batch(), loop).result())

    def warn(entry_path: bytes, message: str) -> None:
        text = os.fsdecode(entry_path)
        summary.skipped.append({"path": text, "message": message})
        if on_warning is not None:
            loop.call_soon_threadsafe(on_warning, text, message)

    def write() -> None:
        if summary.kind == "file":
            assert top is not None
            for chunk in feed.content(top.node):
                sink.write(chunk)
                summary.bytes += len(chunk)
            sink.flush()
            summary.entries = 1
            return
        writer = archive_writer(summary.kind, sink, warn)
        for directory, problem in refused:
            warn(directory, problem)
        try:
            for entry in entries:
                content = feed.content(entry.node)
                if writer.add(entry.path, entry.node, content, entry.size, entry.link_to):
                    summary.entries += 1
                    if entry.node.type == FILE and entry.link_to is None:
                        summary.bytes += entry.size
        except BaseException:
            writer.abandon()
            raise
        writer.close()

    try:
        await asyncio.to_thread(write)
    finally:
        await reader.aclose()
        pool.shutdown(wait=True, cancel_futures=True)
    if refused:
        raise IntegrityError(
            f"snapshot {snapshot.short_id}: {len(refused)} entries with unsafe names in "
            "damaged or forged trees were left out of the archive"
        )
    return summary
