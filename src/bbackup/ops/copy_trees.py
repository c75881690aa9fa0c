"""The trees of a copied snapshot: read the source's directory by directory, find the file
contents the target does not have yet, and write the trees again with the target's blob
IDs once those are stored.

What is known to be in the target complete is remembered (`CopyMemo`): a source tree or
file content → the target's. It starts from the copy of an earlier snapshot of the same
host and paths (`pair`): a directory whose source tree is unchanged since then keeps that
copy's tree without being read, as a backup reuses its parent's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field

from bbackup.crypto.aead import BlobType
from bbackup.errors import IntegrityError
from bbackup.ops.copy_content import content_key
from bbackup.ops.copy_reads import SourceBlobReader
from bbackup.repository import BlobLoader, BlobSaver
from bbackup.snapshot.model import DIR, FILE, Node, Tree
from bbackup.snapshot.store import load_tree

#: (source tree, the target's copy of it) of an earlier copy, to start from.
TreePair = tuple[bytes, bytes]


#: Entries the memo keeps across snapshots at most (about 200 bytes each); beyond, it
#: starts again, and later snapshots lean on their earlier copies (`pair`) alone.
MEMO_MAX_ENTRIES = 1_000_000


@dataclass(slots=True)
class CopyMemo:
    """What the target holds complete: source tree ID → target tree ID, and content key
    (`content_key`) → target blob IDs. Only an optimisation: clear it when unsure."""

    trees: dict[bytes, bytes] = field(default_factory=dict)
    contents: dict[bytes, list[bytes]] = field(default_factory=dict)

    def clear(self) -> None:
        self.trees.clear()
        self.contents.clear()

    def trim(self) -> None:
        """Bound the memory it takes: clear it once it holds MEMO_MAX_ENTRIES."""
        if len(self.trees) + len(self.contents) > MEMO_MAX_ENTRIES:
            self.clear()


@dataclass(slots=True)
class TreePlan:
    """The source trees of one snapshot that must be written again (their stored bytes,
    which take a few times less memory than parsed trees, and their subtrees), and the
    contents (content key → source blob IDs) the target does not have yet."""

    root: bytes
    trees: dict[bytes, bytes] = field(default_factory=dict)
    subtrees: dict[bytes, list[bytes]] = field(default_factory=dict)
    contents: dict[bytes, list[bytes]] = field(default_factory=dict)


class TreeCopier:
    """Plans and writes the trees of copied snapshots. `target` is read for the trees of
    earlier copies only; every source blob comes through `reader`."""

    def __init__(self, reader: SourceBlobReader, target: BlobLoader, memo: CopyMemo) -> None:
        self.reader = reader
        self.target = target
        self.memo = memo

    async def plan(self, root: bytes, pair: TreePair | None) -> TreePlan:
        """Read the source trees under `root` that the memo does not know, a level at a
        time (one batch of reads per level), beside the trees of `pair` at the same paths."""
        plan = TreePlan(root)
        level: dict[bytes, TreePair | None] = {root: pair}
        while level:
            known = self.memo.trees
            todo = {s: p for s, p in level.items() if s not in known and s not in plan.trees}
            raw, earlier_raw = await asyncio.gather(
                self.reader.read_blobs(todo), self._read_earlier(todo.values())
            )
            earlier = await asyncio.gather(*(self._earlier(p, earlier_raw) for p in todo.values()))
            level = {}
            for (tree_id, _), counterparts in zip(todo.items(), earlier, strict=True):
                tree = _parse(tree_id, raw[tree_id])
                plan.trees[tree_id] = raw[tree_id]
                plan.subtrees[tree_id] = _subtrees(tree)
                for node in tree.nodes:
                    self._plan_node(node, counterparts.get(node.name), plan, level)
        return plan

    def _plan_node(
        self,
        node: Node,
        counterpart: tuple[Node, Node] | None,
        plan: TreePlan,
        level: dict[bytes, TreePair | None],
    ) -> None:
        """Note what `node` needs: its subtree on the next level, or its content, unless
        the counterpart (the same path in the earlier source and its copy) has it."""
        earlier, copied = counterpart or (None, None)
        if node.type == DIR and node.subtree is not None:
            sub_pair = None
            if earlier is not None and copied is not None and copied.subtree is not None:
                if earlier.subtree == node.subtree:
                    self.memo.trees[node.subtree] = copied.subtree
                    return
                if earlier.subtree is not None:
                    sub_pair = (earlier.subtree, copied.subtree)
            level.setdefault(node.subtree, sub_pair)
        elif node.type == FILE and node.content:
            key = content_key(node.content)
            if key in self.memo.contents:
                return
            if earlier is not None and copied is not None and earlier.content == node.content:
                self.memo.contents[key] = copied.content
                return
            plan.contents[key] = node.content

    async def _read_earlier(self, pairs: Iterable[TreePair | None]) -> dict[bytes, bytes]:
        """The earlier source trees of `pairs`; none if one cannot be read (they only
        spare work)."""
        try:
            return await self.reader.read_blobs(p[0] for p in pairs if p is not None)
        except IntegrityError:
            return {}

    async def _earlier(
        self, pair: TreePair | None, raw: dict[bytes, bytes]
    ) -> dict[bytes, tuple[Node, Node]]:
        """Name → (node in the earlier source tree, node in its copy) for every name both
        hold with the same type; nothing if either tree cannot be read."""
        if pair is None or pair[0] not in raw:
            return {}
        try:
            copied = await load_tree(self.target, pair[1])
        except IntegrityError:
            return {}  # damaged in the target: copy as if there were no earlier copy
        try:
            earlier = {n.name: n for n in _parse(pair[0], raw[pair[0]]).nodes}
        except IntegrityError:
            return {}
        return {
            n.name: (earlier[n.name], n)
            for n in copied.nodes
            if n.name in earlier and earlier[n.name].type == n.type
        }

    async def write(self, plan: TreePlan, writer: BlobSaver) -> bytes:
        """Write the planned trees with the target's IDs, each after those below it (the
        contents must be in the memo); return the root's ID in the target."""
        stack: list[tuple[bytes, bool]] = [(plan.root, False)]
        while stack:
            tree_id, children_done = stack.pop()
            if tree_id in self.memo.trees:
                continue
            if not children_done:
                stack.append((tree_id, True))
                stack += [(s, False) for s in plan.subtrees[tree_id] if s not in self.memo.trees]
                continue
            raw = plan.trees[tree_id]
            tree = _parse(tree_id, raw)
            changed = False
            for node in tree.nodes:
                if node.type == DIR and node.subtree is not None:
                    new = self.memo.trees[node.subtree]
                    changed |= new != node.subtree
                    node.subtree = new
                elif node.type == FILE and node.content:
                    content = self.memo.contents[content_key(node.content)]
                    changed |= content != node.content
                    node.content = content
            # Unchanged (the same IDs in both): its own bytes, so its ID stays the same too.
            data = tree.to_bytes() if changed else raw
            prepared = writer.prepare(BlobType.TREE, data)
            await writer.add(prepared)
            self.memo.trees[tree_id] = prepared.blob_id
        return self.memo.trees[plan.root]


def _parse(tree_id: bytes, raw: bytes) -> Tree:
    try:
        return Tree.from_bytes(raw)
    except IntegrityError as exc:
        raise IntegrityError(f"tree {tree_id.hex()[:16]}: {exc}") from None


def _subtrees(tree: Tree) -> list[bytes]:
    return [n.subtree for n in tree.nodes if n.type == DIR and n.subtree is not None]
