"""Repository checks: structure always, pack contents with --read-data.

Structure: every snapshot loads, every tree it reaches loads, every blob it references is
in the index, every pack the index lists exists with the indexed size. Read-data: every
(or a sample of) pack is downloaded, its SHA-256 name verified, its header compared with
the index and every blob decrypted and checked against its ID. Damage is reported by
object name; packs that no index lists (left by an interrupted backup) are only warnings.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from bbackup.errors import BbackupError, IntegrityError, NotFound, StorageError, UsageError
from bbackup.repository import (
    IndexEntry,
    Repository,
    pack_object_name,
    parse_pack,
    verify_pack_id,
)
from bbackup.snapshot.model import DIR, FILE
from bbackup.snapshot.store import load_snapshot, load_snapshots, load_tree


@dataclass(slots=True)
class CheckReport:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    snapshots: int = 0
    trees: int = 0
    blobs_referenced: int = 0
    packs: int = 0
    packs_read: int = 0
    bytes_read: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


@dataclass(frozen=True, slots=True)
class ReadDataSubset:
    """Which packs to read: all, a fraction ("10%"), or group n of m ("2/5")."""

    fraction: float = 1.0
    group: tuple[int, int] | None = None

    @classmethod
    def parse(cls, text: str) -> ReadDataSubset:
        text = text.strip()
        if m := re.fullmatch(r"(\d+(?:\.\d+)?)%", text):
            value = float(m.group(1))
            if not 0 < value <= 100:
                raise UsageError(f"--read-data-subset {text}: percentage must be in (0, 100]")
            return cls(fraction=value / 100)
        if m := re.fullmatch(r"(\d+)/(\d+)", text):
            n, total = int(m.group(1)), int(m.group(2))
            if not 1 <= n <= total:
                raise UsageError(f"--read-data-subset {text}: need 1 <= n <= m in n/m")
            return cls(group=(n, total))
        raise UsageError(f"--read-data-subset {text!r}: use a percentage (10%) or n/m (1/5)")

    def select(self, pack_ids: list[str]) -> list[str]:
        ordered = sorted(pack_ids)
        if self.group is not None:
            n, total = self.group
            return [p for p in ordered if int(p[:8], 16) % total == n - 1]
        if self.fraction >= 1.0:
            return ordered
        count = max(1, round(len(ordered) * self.fraction)) if ordered else 0
        return sorted(random.sample(ordered, count))


async def check_repository(
    repo: Repository,
    *,
    read_data: ReadDataSubset | None = None,
    workers: int = 2,
    connections: int = 4,
    on_progress: Callable[[str], None] | None = None,
) -> CheckReport:
    report = CheckReport()
    await _check_packs_exist(repo, report)
    await _check_snapshots(repo, report)
    if read_data is not None:
        await _read_packs(repo, report, read_data, workers, connections, on_progress)
    return report


async def _check_packs_exist(repo: Repository, report: CheckReport) -> None:
    stored: dict[str, int] = {}
    for prefix in ("data/", "tree/"):
        async for info in repo.storage.list(prefix):
            stored[info.name] = info.size
    packs = repo.index.all_packs()
    report.packs = len(packs)
    indexed_names = set()
    for pack in packs.values():
        name = pack_object_name(pack.blob_type, pack.pack_id)
        indexed_names.add(name)
        if name not in stored:
            report.errors.append(f"{name}: pack is in the index but missing from the repository")
        elif stored[name] != pack.size:
            report.errors.append(
                f"{name}: size {stored[name]} does not match the indexed size {pack.size}"
            )
    for name in sorted(set(stored) - indexed_names):
        report.warnings.append(
            f"{name}: pack is not in any index (left by an interrupted backup; prune removes it)"
        )


async def _check_snapshots(repo: Repository, report: CheckReport) -> None:
    names = await repo.list_names("snapshots/")
    try:
        snapshots = await load_snapshots(repo)
    except IntegrityError:
        snapshots = []
        for name in names:  # find which one is damaged
            try:
                snapshots.append(await load_snapshot(repo, name))
            except (IntegrityError, StorageError) as exc:
                report.errors.append(f"{name}: {exc}")
    report.snapshots = len(snapshots)
    seen_trees: set[bytes] = set()
    referenced: set[bytes] = set()
    for snapshot in snapshots:
        stack = [(snapshot.tree, f"snapshot {snapshot.short_id}:/")]
        while stack:
            tree_id, where = stack.pop()
            if tree_id in seen_trees:
                continue
            seen_trees.add(tree_id)
            if not repo.index.has(tree_id):
                report.errors.append(f"tree {tree_id.hex()} ({where}): not in the index")
                continue
            try:
                tree = await load_tree(repo, tree_id)
            except (IntegrityError, StorageError) as exc:
                report.errors.append(f"tree {tree_id.hex()} ({where}): {exc}")
                continue
            for node in tree.nodes:
                path = where.rstrip("/") + "/" + node.display_name
                if node.type == DIR:
                    if node.subtree is None:
                        report.errors.append(f"{path}: directory without a subtree")
                    else:
                        stack.append((node.subtree, path))
                elif node.type == FILE:
                    for blob_id in node.content:
                        if blob_id not in referenced:
                            referenced.add(blob_id)
                            if not repo.index.has(blob_id):
                                report.errors.append(
                                    f"blob {blob_id.hex()} ({path}): not in the index"
                                )
    report.trees = len(seen_trees)
    report.blobs_referenced = len(referenced)


async def _read_packs(
    repo: Repository,
    report: CheckReport,
    subset: ReadDataSubset,
    workers: int,
    connections: int,
    on_progress: Callable[[str], None] | None,
) -> None:
    packs = repo.index.all_packs()
    selected = subset.select(list(packs))
    slots = asyncio.Semaphore(max(1, connections))
    pool = ThreadPoolExecutor(workers, thread_name_prefix="bb-check")
    loop = asyncio.get_running_loop()

    async def read_one(pack_id: str) -> None:
        pack = packs[pack_id]
        name = pack_object_name(pack.blob_type, pack_id)
        # The slot is held through verification: packs never pile up waiting for the
        # verifying threads, so memory stays within connections × pack size.
        async with slots:
            try:
                data = await repo.storage.get(name)
            except NotFound:
                return  # already reported by the structure check
            except BbackupError as exc:
                report.errors.append(f"{name}: cannot read: {exc}")
                return
            report.bytes_read += len(data)
            problems = await loop.run_in_executor(pool, _verify_pack, repo, pack_id, data)
            del data
        report.errors.extend(f"{name}: {p}" for p in problems)
        report.packs_read += 1
        if on_progress is not None:
            on_progress(name)

    try:
        await asyncio.gather(*(read_one(p) for p in selected))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _verify_pack(repo: Repository, pack_id: str, data: bytes) -> list[str]:
    problems: list[str] = []
    try:
        verify_pack_id(pack_id, data)
    except IntegrityError as exc:
        problems.append(str(exc).split(": ", 1)[-1])
    try:
        blobs = parse_pack(repo.cipher, data)
    except IntegrityError as exc:
        return [*problems, f"header: {exc}"]
    indexed = {b[0]: b for b in repo.index.all_packs()[pack_id].blobs}
    view = memoryview(data)
    for blob in blobs:
        if blob.blob_id not in indexed:
            problems.append(f"blob {blob.blob_id.hex()[:16]} is in the pack but not in the index")
        entry = IndexEntry(pack_id, blob.blob_type, blob.offset, blob.length, blob.raw_length)
        try:
            repo.decode_blob(blob.blob_id, entry, view[blob.offset : blob.offset + blob.length])
        except IntegrityError as exc:
            problems.append(str(exc))
    return problems
