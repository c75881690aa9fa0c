"""Where a backed-up file's blobs and a directory's tree live, read through the Python API,
for the restore tests that damage exactly one pack, blob or tree and then know which
files must be lost and which must come back."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path

from cli_harness import PASSWORD

from bbackup.repository import IndexEntry, open_repository, pack_object_name
from bbackup.snapshot.model import DIR, FILE
from bbackup.snapshot.store import find_snapshot, load_snapshots, load_tree
from bbackup.storage import open_storage


@dataclass(frozen=True, slots=True)
class StoredBlob:
    blob_id: bytes
    entry: IndexEntry

    @property
    def pack_path(self) -> str:
        """The pack's object name below the repository (data/ab/abcd...)."""
        return pack_object_name(self.entry.blob_type, self.entry.pack_id)


@dataclass(frozen=True, slots=True)
class Layout:
    #: Absolute source path of every regular file → its blobs, in order.
    files: dict[str, list[StoredBlob]]
    #: Absolute source path of every directory → the blob of its tree.
    trees: dict[str, StoredBlob]


def read_layout(repo: Path, snapshot: str = "latest") -> Layout:
    async def main() -> Layout:
        stack = open_storage(str(repo))
        try:
            opened = await open_repository(stack, PASSWORD, use_cache=False)
            snap = find_snapshot(await load_snapshots(opened), snapshot)
            files: dict[str, list[StoredBlob]] = {}
            trees: dict[str, StoredBlob] = {}

            async def walk(tree_id: bytes, path: str) -> None:
                trees[path or "/"] = StoredBlob(tree_id, opened.index.lookup(tree_id))
                for node in (await load_tree(opened, tree_id)).nodes:
                    child = f"{path}/{os.fsdecode(node.name)}"
                    if node.type == DIR and node.subtree is not None:
                        await walk(node.subtree, child)
                    elif node.type == FILE:
                        files[child] = [StoredBlob(b, opened.index.lookup(b)) for b in node.content]

            await walk(snap.tree, "")
            return Layout(files, trees)
        finally:
            await stack.storage.aclose()

    return asyncio.run(main())


def flip_byte(path: Path, offset: int) -> None:
    with path.open("r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ 0x20]))
