"""A repository with a known history for the everyday commands' tests (diff, find, tag,
rewrite, cat, list): two snapshots of one small tree, with known changes between them."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
from cli_harness import Cli, MakeTree

from bbackup.repository import open_repository
from bbackup.repository.lock import LOCK_KIND
from bbackup.storage import StorageOptions, open_storage

#: 2020-01-01 and 2025-06-01 00:00 UTC, in ns: the mtimes find's --oldest/--newest sees.
OLD_MTIME_NS = 1_577_836_800 * 10**9
NEW_MTIME_NS = 1_748_736_000 * 10**9
SECRET = b"AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n"


@dataclass(frozen=True, slots=True)
class History:
    #: A local directory or an S3 URL.
    repo: Path | str
    src: Path
    #: The snapshot before and after the changes.
    first: str
    second: str

    def path(self, relative: str) -> str:
        """The path of a source entry as snapshots show it (absolute)."""
        return os.path.join(os.path.abspath(self.src), relative) if relative else str(self.src)


def ok(result: Any) -> Any:
    assert result.exit_code == 0, result
    return result


def make_history(tmp_path: Path, repo: Path | str, cli: Cli, make_tree: MakeTree) -> History:
    """snapshot 1: a.txt, docs/{report.pdf,notes.txt}, keep/same.txt, .env (the secret);
    snapshot 2: a.txt changed, docs/notes.txt removed, docs/new.pdf and extra/x.bin
    added, keep/ unchanged."""
    src = make_tree(
        tmp_path / "src",
        {
            "a.txt": "alpha\n",
            "docs": {"report.pdf": "pdf one\n", "notes.txt": "notes\n"},
            "keep": {"same.txt": "unchanged\n"},
            ".env": SECRET,
        },
    )
    os.utime(src / "docs" / "report.pdf", ns=(OLD_MTIME_NS, OLD_MTIME_NS))
    first = ok(cli("backup", "-r", repo, "--json", "--time", "2026-01-01T00:00:00+00:00", src))
    (src / "a.txt").write_text("alpha, changed\n")
    (src / "docs" / "notes.txt").unlink()
    (src / "docs" / "new.pdf").write_text("pdf two!\n")
    os.utime(src / "docs" / "new.pdf", ns=(NEW_MTIME_NS, NEW_MTIME_NS))
    make_tree(src / "extra", {"x.bin": b"\x00\x01\x02"})
    second = ok(cli("backup", "-r", repo, "--json", "--time", "2026-02-01T00:00:00+00:00", src))
    return History(
        repo, src, first.event("summary")["snapshot_id"], second.event("summary")["snapshot_id"]
    )


def store_lock(repo: Path | str, *, exclusive: bool, at: float) -> str:
    """Store a lock of user backup on host "nas" (not this machine: never stale by its
    pid), refreshed at `at`; return its ID."""

    async def store() -> str:
        stack = open_storage(str(repo), StorageOptions())
        try:
            opened = await open_repository(stack, os.environ["BBACKUP_PASSWORD"], load_index=False)
            payload = {"host": "nas", "pid": 4242, "user": "backup", "time": at,
                       "exclusive": exclusive, "purpose": "prune", "started": at}  # fmt: skip
            name = await opened.save_document("locks", LOCK_KIND, msgpack.packb(payload))
            return name.rsplit("/", 1)[-1]
        finally:
            await stack.storage.aclose()

    return asyncio.run(store())
