"""What the integration tests share besides fixtures: the result of one bbackup run,
a subprocess runner, and small filesystem measurements."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

PASSWORD = "correct horse battery staple"
#: The cheapest key `init` and `key add` make (~10 ms to derive): for bbackup run in a
#: subprocess, where conftest's `cheap_key_derivation` does not reach.
CHEAPEST_KDF = ("--kdf-memory", "8", "--kdf-time", "1")


@dataclass(frozen=True, slots=True)
class CliResult:
    """What a user sees from one bbackup invocation."""

    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def events(self) -> list[dict[str, Any]]:
        """Every JSON line on stdout (progress, errors, summaries)."""
        return [json.loads(line) for line in self.stdout.splitlines() if line.startswith("{")]

    def event(self, name: str) -> dict[str, Any]:
        """The one JSON event of that name on stdout."""
        found = [e for e in self.events() if e.get("event") == name]
        assert len(found) == 1, f"expected one {name!r} event in:\n{self.stdout}\n{self.stderr}"
        return found[0]

    def snapshot_list(self) -> list[dict[str, Any]]:
        """The array `snapshots --json` prints: one object per snapshot."""
        listed = json.loads(self.stdout)
        assert isinstance(listed, list), self
        return listed

    def __str__(self) -> str:
        return f"exit {self.exit_code}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


class Cli(Protocol):
    """The `cli` fixture: run bbackup with these arguments."""

    def __call__(self, *args: str | os.PathLike[str]) -> CliResult: ...


Spec = dict[str, "bytes | str | Spec | None"]


class FailReading(Protocol):
    """The `fail_reading` fixture: opening `path` for backup raises `error`."""

    def __call__(self, path: Path, error: OSError) -> None: ...


class MakeTree(Protocol):
    """The `make_tree` fixture: build `spec` under `root` and return `root`."""

    def __call__(self, root: Path, spec: Spec) -> Path: ...


def run_subprocess(
    *args: str | os.PathLike[str],
    stdin: int | None = subprocess.DEVNULL,
    env: dict[str, str] | None = None,
    timeout: float = 60,
) -> CliResult:
    """Run `python -m bbackup` as a separate process (no TTY: stdin is /dev/null)."""
    proc = subprocess.run(
        [sys.executable, "-m", "bbackup", *(os.fspath(a) for a in args)],
        stdin=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def tree_size(root: Path) -> int:
    """Bytes of every file under `root` (what the repository occupies on disk)."""
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def restored_path(target: Path, source: Path) -> Path:
    """Where a source path lands when restored: `<target>/<absolute source path>`."""
    return target / os.path.abspath(source).lstrip("/")
