"""Security of the commands added late (dump, mount, drill, service config), attacked as
docs/security.md says an attacker may: a forged or damaged tree holding names with `/`,
`..`, NUL, empty names or two entries of one name never becomes an archive member that
leads a tar out of its directory; what a hostile snapshot or another local user plants
cannot make bbackup write where it should not."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
import tarfile
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cli_harness import PASSWORD

from bbackup.crypto.aead import BlobType
from bbackup.repository import open_repository
from bbackup.snapshot.model import DIR, FILE, SYMLINK, Node, Tree
from bbackup.snapshot.model import Snapshot as SnapshotDoc
from bbackup.snapshot.store import save_snapshot, save_tree
from bbackup.storage import open_storage

GOOD = b"an honest file\n"
EVIL = b"written through a forged tree\n"


def forge_snapshot(repo: Path) -> str:
    """Store, with the password (a key holder, or a writer's bug), a snapshot whose root
    tree holds `good.txt`, then names no backup writes: `../escape`, `..`, an empty name,
    a name with NUL, and `evil` twice: a symlink to / and a directory holding `etc/passwd`
    (the tar-slip: a member written through a symlink member)."""

    async def forge() -> str:
        stack = open_storage(str(repo))
        try:
            opened = await open_repository(stack, PASSWORD, use_cache=False)
            writer = opened.new_writer()
            contents = {}
            for data in (GOOD, EVIL):
                blob = writer.prepare(BlobType.DATA, data)
                await writer.add(blob)
                contents[data] = blob.blob_id

            def file(name: bytes, data: bytes) -> Node:
                return Node(name, FILE, mode=0o644, size=len(data), content=[contents[data]])

            etc = await save_tree(writer, Tree([file(b"passwd", EVIL)]))
            evil_dir = await save_tree(writer, Tree([Node(b"etc", DIR, mode=0o755, subtree=etc)]))
            root = Tree(
                [
                    file(b"good.txt", GOOD),
                    file(b"../escape", EVIL),
                    file(b"..", EVIL),
                    file(b"", EVIL),
                    file(b"nul\0name", EVIL),
                    Node(b"evil", SYMLINK, mode=0o777, link_target=b"/"),
                    Node(b"evil", DIR, mode=0o755, subtree=evil_dir),
                ]
            )
            root_id = await save_tree(writer, root)
            await writer.flush()
            snapshot = SnapshotDoc(datetime.now(UTC), "forger", ["/"], root_id)
            return await save_snapshot(opened, snapshot)
        finally:
            await stack.storage.aclose()

    return asyncio.run(forge())


def run_bbackup(*args: str | os.PathLike[str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "bbackup", *(os.fspath(a) for a in args)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=60,
    )


def is_safe_member(name: str) -> bool:
    parts = name.rstrip("/").split("/")
    return not name.startswith("/") and all(p not in ("", ".", "..") for p in parts)


@pytest.mark.parametrize("archive", ["tar", "zip"])
def test_dump_of_a_forged_tree_emits_no_unsafe_member_and_exits_13(
    repo: Path, archive: str, tmp_path: Path
) -> None:
    snapshot = forge_snapshot(repo)

    result = run_bbackup("dump", "-r", repo, "--archive", archive, snapshot[:8], "/")

    assert result.returncode == 13, result.stderr
    assert b"unsafe name" in result.stderr
    if archive == "tar":
        with tarfile.open(fileobj=io.BytesIO(result.stdout)) as tar:
            members = {m.name: m for m in tar.getmembers()}
            assert all(is_safe_member(name) and "\0" not in name for name in members), members
            # No member below a symlink member: nothing is written through a link.
            links = {name for name, m in members.items() if m.issym()}
            assert not [n for n in members for link in links if n.startswith(link + "/")]
            target = tmp_path / "extracted"
            tar.extractall(target, filter="fully_trusted")  # as a plain `tar -x` would
        assert (target / "good.txt").read_bytes() == GOOD
        assert not (tmp_path / "escape").exists()
    else:
        with zipfile.ZipFile(io.BytesIO(result.stdout)) as zipped:
            names = zipped.namelist()
            assert all(is_safe_member(name) and "\0" not in name for name in names), names
            assert zipped.read("good.txt") == GOOD
            assert names.count("evil/") + names.count("evil") <= 1
