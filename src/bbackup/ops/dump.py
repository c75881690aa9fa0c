"""`bbackup dump`: one file of a snapshot as its bytes, or a subtree as a tar or zip
stream, written front to back to a stream that need not be seekable (stdout).

The trees are walked first. Then the blobs are read in the order the stream needs them:
a run of neighbouring blobs of one pack is one ranged read (as restore plans them; a
file's chunks, and a directory's small files, mostly sit in order in one pack), several
reads are in flight ahead of the writer, blobs are decoded in worker threads, and one
thread writes the archive.
"""

from __future__ import annotations

import asyncio
import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import BinaryIO

from bbackup.errors import IntegrityError, UsageError
from bbackup.ops.dump_archive import archive_writer
from bbackup.ops.restore import MAX_BYTES_IN_FLIGHT, MAX_RANGE_GAP, NeededBlob, PackRead
from bbackup.repository import BlobLoader, Index, pack_object_name
from bbackup.snapshot.model import DIR, FILE, Node, Snapshot
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
        if tree_id is None:
            break
        node = (await load_tree(loader, tree_id)).find(part)
        if node is None:
            break
        tree_id = node.subtree if node.type == DIR else None
    else:
        assert node is not None
        return DumpEntry(b"/" + b"/".join(parts), node)
    raise PathNotInSnapshot(f"{path}: no such file or directory in snapshot {snapshot.short_id}")


async def walk_entries(
    loader: BlobLoader, top: DumpEntry | None, root_tree: bytes
) -> list[DumpEntry]:
    """`top` and everything below it (the whole snapshot when `top` is None), each
    directory before its contents, siblings by name. An explicit stack, not recursion:
    paths may be thousands of directories deep."""
    out: list[DumpEntry] = []
    pending: list[DumpEntry] = []

    async def push_children(tree_id: bytes, prefix: bytes) -> None:
        tree = await load_tree(loader, tree_id)
        nodes = sorted(tree.nodes, key=lambda n: n.name)
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


def plan_stream_reads(
    index: Index, blob_ids: list[bytes], *, max_gap: int, max_bytes: int | None
) -> list[PackRead]:
    """Group blobs, in the order given, into ranged reads: a blob joins the read before it
    if it lies in the same pack after it, at most `max_gap` unneeded bytes further, and
    the read stays within `max_bytes` (None: no limit). Unlike restore's `plan_reads`,
    the order is the stream's, never the pack's."""
    reads: list[PackRead] = []
    for blob_id in blob_ids:
        entry = index.lookup(blob_id)
        if reads:
            read = reads[-1]
            last = read.blobs[-1].entry
            if (
                entry.pack_id == last.pack_id
                and read.end <= entry.offset <= read.end + max_gap
                and (max_bytes is None or entry.offset + entry.length - read.start <= max_bytes)
            ):
                read.blobs.append(NeededBlob(blob_id, entry))
                continue
        reads.append(PackRead([NeededBlob(blob_id, entry)]))
    return reads


class OrderedBlobReader:
    """The plaintext of planned reads, one read at a time in order, with up to `window`
    reads fetched and decoded ahead."""

    def __init__(
        self, loader: BlobLoader, reads: list[PackRead], *, window: int, pool: ThreadPoolExecutor
    ) -> None:
        self.loader = loader
        self.reads = deque(reads)
        self.window = max(1, window)
        self.pool = pool
        self.pending: deque[asyncio.Task[list[bytes]]] = deque()

    def _fill(self) -> None:
        while self.reads and len(self.pending) < self.window:
            self.pending.append(asyncio.ensure_future(self._fetch(self.reads.popleft())))

    async def next_read(self) -> list[bytes]:
        """The plaintexts of the next read's blobs, in order."""
        self._fill()
        if not self.pending:
            raise IntegrityError("dump: the stream asked for more blobs than were planned")
        blobs = await self.pending.popleft()
        self._fill()
        return blobs

    async def _fetch(self, read: PackRead) -> list[bytes]:
        first = read.blobs[0].entry
        name = pack_object_name(first.blob_type, first.pack_id)
        data = await self.loader.read_pack(name, read.start, read.end - read.start)
        if len(data) != read.end - read.start:
            raise IntegrityError(f"pack {first.pack_id}: {name} is truncated")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.pool, self._decode, data, read)

    def _decode(self, data: bytes, read: PackRead) -> list[bytes]:
        view = memoryview(data)
        start = read.start
        blobs = []
        for blob in read.blobs:
            at = blob.entry.offset - start
            sealed = view[at : at + blob.entry.length]
            blobs.append(self.loader.decode_blob(blob.blob_id, blob.entry, sealed))
        return blobs

    async def aclose(self) -> None:
        """Stop every read in flight."""
        for task in self.pending:
            task.cancel()
        await asyncio.gather(*self.pending, return_exceptions=True)
        self.pending.clear()


class _BlobFeed:
    """The writer thread's side: blobs one at a time, each read fetched from the event
    loop when the one before is used up."""

    def __init__(self, next_read: Callable[[], list[bytes]]) -> None:
        self._next_read = next_read
        self._blobs: deque[bytes] = deque()

    def content(self, node: Node) -> Iterator[bytes]:
        for _ in node.content:
            while not self._blobs:
                self._blobs.extend(self._next_read())
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
    on_warning: Callable[[str, str], None] | None = None,
) -> DumpSummary:
    """Write `path` of `snapshot` to `sink`: a regular file's bytes unless `archive`
    ("tar" or "zip") is asked for; anything else as a tar (default) or zip archive of it
    and everything below it, named by their paths in the snapshot without the leading
    "/". PathNotInSnapshot if there is no such path. On a failure the archive is left
    truncated (no end), so no reader takes it for whole."""
    top = await find_entry(loader, snapshot, path)
    if archive is None and top is not None and top.node.type == FILE:
        summary = DumpSummary("file")
        entries = [top]
    else:
        summary = DumpSummary(archive or "tar")
        entries = await walk_entries(loader, top, snapshot.tree)
    index = loader.index
    blob_ids = plan_content(index, entries, hard_links=summary.kind == "tar")
    reads = plan_stream_reads(index, blob_ids, max_gap=max_gap, max_bytes=read_size)
    read_bytes = read_size or loader.config.pack_size
    window = min(connections, max(2, MAX_BYTES_IN_FLIGHT // read_bytes))
    loop = asyncio.get_running_loop()
    pool = ThreadPoolExecutor(workers, thread_name_prefix="bb-dump")
    reader = OrderedBlobReader(loader, reads, window=window, pool=pool)
    feed = _BlobFeed(lambda: asyncio.run_coroutine_threadsafe(reader.next_read(), loop).result())

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
        for entry in entries:
            content = feed.content(entry.node)
            if writer.add(entry.path, entry.node, content, entry.size, entry.link_to):
                summary.entries += 1
                if entry.node.type == FILE and entry.link_to is None:
                    summary.bytes += entry.size
        writer.close()

    try:
        await asyncio.to_thread(write)
    finally:
        await reader.aclose()
        pool.shutdown(wait=True, cancel_futures=True)
    return summary
