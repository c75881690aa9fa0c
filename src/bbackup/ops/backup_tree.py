"""The tree walk of a backup: each directory is listed, each entry compared with its node
in the parent snapshot and either reused, sent to the reader threads or recorded at once;
a directory's tree blob is saved once its files are read.

The source paths hang from a "virtual tree" of the directories that lead to them, which
is saved too (with only those entries), so every snapshot has one root tree.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Sequence

from bbackup.errors import BbackupError
from bbackup.ops.backup_batching import Entry, FileBatcher, TaskSpawner
from bbackup.ops.backup_changes import same_tree, unchanged
from bbackup.ops.backup_summary import BackupProgress, BackupSummary
from bbackup.ops.excludes import Excluder
from bbackup.ops.scan import Prescan, node_from_stat, scan_dir
from bbackup.ops.walk_gc import WalkCollection
from bbackup.repository import BlobWriter, Repository
from bbackup.snapshot.model import DIR, FILE, Node, Tree
from bbackup.snapshot.store import load_tree, save_tree


class _Leaf:
    """Marks a backup source path inside the virtual tree of path components."""


_LEAF = _Leaf()
VirtualTree = dict[bytes, "VirtualTree | _Leaf"]


def virtual_tree(paths: Sequence[str]) -> VirtualTree:
    """The path components leading to each source path, as nested dicts."""
    root: VirtualTree = {}
    for path in paths:
        parts = [os.fsencode(p) for p in path.strip("/").split("/") if p]
        if not parts:
            raise BbackupError("backing up / itself: name the directories under it instead")
        node = root
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            assert isinstance(child, dict)
            node = child
        node[parts[-1]] = _LEAF
    return root


class TreeWalker:
    """Walks the source paths and saves their trees, reusing what the parent still has."""

    def __init__(
        self,
        repo: Repository,
        writer: BlobWriter,
        batcher: FileBatcher,
        *,
        full: bool,
        excluder: Excluder,
        prescan: Prescan | None,
        summary: BackupSummary,
        progress: BackupProgress,
        report_error: Callable[[bytes, str], None],
        spawn: TaskSpawner,
    ) -> None:
        self.repo = repo
        self._writer = writer
        self._batcher = batcher
        self._full = full
        self.excluder = excluder
        self._prescan = prescan
        self.summary = summary
        self.progress = progress
        self._error = report_error
        self._task = spawn
        #: The garbage collector's policy while the walk runs (held by the archiver).
        self.collection = WalkCollection()

    async def _parent_nodes(self, tree_id: bytes | None) -> dict[bytes, Node]:
        if tree_id is None or not self.repo.index.has(tree_id):
            return {}
        return {n.name: n for n in (await load_tree(self.repo, tree_id)).nodes}

    async def save_virtual(
        self, prefix: bytes, children: VirtualTree, parent_tree: bytes | None
    ) -> bytes:
        """Save the directories leading to the source paths (not their other entries)."""
        previous = await self._parent_nodes(parent_tree)
        nodes: list[Node] = []
        tasks: list[Entry] = []
        for name, child in sorted(children.items()):
            path = prefix + b"/" + name
            try:
                node = await asyncio.to_thread(_stat_node, name, path)
            except OSError as exc:
                self._error(path, exc.strerror or str(exc))
                continue
            prev = previous.get(name)
            if isinstance(child, _Leaf):
                tasks.append(await self._schedule(path, node, prev))
            else:
                node.subtree = await self.save_virtual(
                    path, child, prev.subtree if prev and prev.type == DIR else None
                )
                nodes.append(node)
        await self._batcher.flush()  # the walk below is done: nothing else will send it
        nodes.extend(await self._batcher.resolve(tasks))
        return await save_tree(self._writer, Tree(nodes))

    async def _save_dir(self, path: bytes, parent_tree: bytes | None) -> asyncio.Task[bytes]:
        """Walk one directory now; return a task for its tree, saved once its files are.

        The walk goes on to the next directory without waiting for this one's files, so
        the reader threads always have work; how far it runs ahead is bounded by the
        batches in flight, since queueing a file waits for a slot when they are full.
        """
        self.progress.dirs += 1
        self.summary.dirs += 1
        previous = await self._parent_nodes(parent_tree)
        try:
            # Inline, not in a thread: one directory costs well under a millisecond, less
            # than the thread hop, and directories are walked one after the other.
            entries = self._scan_dir(path, previous)
        except OSError as exc:
            self._error(path, f"cannot read directory: {exc.strerror or exc}")
            entries = []
        self.collection.walked(len(entries))
        scheduled: list[Entry] = []
        for entry_path, node in entries:
            prev = previous.get(node.name)
            # An unchanged file is settled here, without a coroutine: on an unchanged
            # backup that is nearly every entry.
            if node.type != FILE:
                scheduled.append(await self._schedule(entry_path, node, prev))
            elif self._reused(node, prev):
                scheduled.append(node)
            else:
                scheduled.append(await self._send(entry_path, node, prev))
        del entries
        task = self._task(self._save_tree(scheduled, parent_tree, previous))
        # Let the tree task start now: when nothing of this directory is left to read (an
        # unchanged backup) it finishes at once and frees the directory's nodes and its
        # parent's. Otherwise a walk that never waits for a read would hold every node
        # of both snapshots until it ends: ~1 KiB per file.
        await asyncio.sleep(0)
        return task

    async def _save_tree(
        self,
        scheduled: list[Entry],
        parent_tree: bytes | None,
        previous: dict[bytes, Node],
    ) -> bytes:
        nodes = await self._batcher.resolve(scheduled)
        if parent_tree is not None and same_tree(nodes, previous, parent_tree, self.repo.index):
            return parent_tree
        return await save_tree(self._writer, Tree(nodes))

    async def _dir_node(self, node: Node, tree: asyncio.Task[bytes]) -> Node | None:
        node.subtree = await tree
        return node

    def _scan_dir(self, path: bytes, previous: dict[bytes, Node]) -> list[tuple[bytes, Node]]:
        prescan = self._prescan
        entries = prescan.take(path) if prescan is not None else None
        if entries is None:
            # Unless --force: an entry whose inode is as the parent recorded keeps its
            # recorded attributes, symlink target and holes (`node_from_stat`).
            entries = scan_dir(path, self.excluder, self._error, None if self._full else previous)
        return entries

    async def _schedule(self, path: bytes, node: Node, prev: Node | None) -> Entry:
        """Save one entry: directories recurse, changed files go to the reader threads (a
        task is returned for those); everything else is done at once."""
        if node.type == DIR:
            subtree = prev.subtree if prev and prev.type == DIR else None
            return self._task(self._dir_node(node, await self._save_dir(path, subtree)))
        if node.type != FILE or self._reused(node, prev):
            return node
        return await self._send(path, node, prev)

    async def _send(self, path: bytes, node: Node, prev: Node | None) -> Entry:
        """Queue a changed or new file for the reader threads (counted)."""
        self.summary.total_files += 1
        self.progress.files += 1
        return await self._batcher.add(path, node, previous=prev)

    def _reused(self, node: Node, prev: Node | None) -> bool:
        """True (and counted) if the file `node` is unchanged since its node in the
        parent, whose content it now has: it needs no reading."""
        if self._full or prev is None or not unchanged(node, prev, self.repo.index):
            return False
        node.content = prev.content
        self.summary.total_files += 1
        self.progress.files += 1
        self.summary.files_unchanged += 1
        self.summary.total_bytes += node.size
        self.progress.bytes_seen += node.size
        return True


def _stat_node(name: bytes, path: bytes) -> Node:
    return node_from_stat(name, path, os.lstat(path))
