"""Run the real bbackup CLI and SIGKILL it at a chosen storage operation, for the kill tests.

    python tests/kill_runner.py [--kill OP:PREFIX:N:WHEN] [--trace FILE] [--put-delay S] -- ARGS

`--kill put:data/:2:after` kills the process right after the second PUT of an object whose
name starts with `data/` returns (OP is put, delete or get; PREFIX may be empty; WHEN is
before or after). `--trace FILE` appends one `OP NAME` line per storage operation, flushed
at once, so a test can see how far a killed run got. `--put-delay 0.2` makes every PUT
wait that long first (a slow uplink), so other processes overlap the run.

The switches live here, in test code: this wraps the request-counting layer that every
storage stack has directly above its backend, so local and S3 repositories die at the
same points and production code knows nothing of it.
"""

from __future__ import annotations

import asyncio
import os
import runpy
import signal
import sys
import tomllib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import Any

from bbackup.storage.counting import CountingStorage

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


@dataclass(frozen=True, slots=True)
class KillPoint:
    """The N-th `op` on a name starting with `prefix`, killed `when` (before or after)."""

    op: str
    prefix: str
    n: int
    when: str

    @classmethod
    def parse(cls, text: str) -> KillPoint:
        op, prefix, n, when = text.split(":")
        if op not in ("put", "delete", "get") or when not in ("before", "after") or int(n) < 1:
            raise SystemExit(f"kill_runner: bad kill point {text!r}")
        return cls(op, prefix, int(n), when)

    def __str__(self) -> str:
        return f"{self.op}:{self.prefix}:{self.n}:{self.when}"


def install(kill: KillPoint | None, trace: Path | None, put_delay: float = 0.0) -> None:
    """Wrap CountingStorage's put/delete/get so they trace and die where asked."""
    seen = 0
    trace_file = trace.open("a", buffering=1) if trace is not None else None

    def die() -> None:
        if trace_file is not None:
            trace_file.write(f"KILLED {kill}\n")
            trace_file.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    def wrap(op: str, original: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def operation(self: CountingStorage, name: str, *args: Any, **kwargs: Any) -> Any:
            nonlocal seen
            hit = False
            if op == "put" and put_delay:
                await asyncio.sleep(put_delay)
            if kill is not None and kill.op == op and name.startswith(kill.prefix):
                seen += 1
                hit = seen == kill.n
            if hit and kill is not None and kill.when == "before":
                die()
            result = await original(self, name, *args, **kwargs)
            if trace_file is not None:
                trace_file.write(f"{op} {name}\n")
            if hit:
                die()
            return result

        return operation

    for op in ("put", "delete", "get"):
        setattr(CountingStorage, op, wrap(op, getattr(CountingStorage, op)))


def entry_point() -> Callable[[], object] | None:
    """The `bbackup` console script named in pyproject.toml (its module may move)."""
    try:
        scripts = tomllib.loads(PYPROJECT.read_text())["project"]["scripts"]
        module, _, attr = scripts["bbackup"].partition(":")
        main: Callable[[], object] = getattr(import_module(module), attr)
    except (OSError, KeyError, ImportError, AttributeError, tomllib.TOMLDecodeError):
        return None
    return main


def main(argv: list[str]) -> None:
    if "--" not in argv:
        raise SystemExit("usage: kill_runner.py [--kill P] [--trace F] [--put-delay S] -- ARGS")
    split = argv.index("--")
    own, args = argv[:split], argv[split + 1 :]
    kill = trace = None
    put_delay = 0.0
    for flag, value in zip(own[::2], own[1::2], strict=True):
        if flag == "--kill":
            kill = KillPoint.parse(value)
        elif flag == "--trace":
            trace = Path(value)
        elif flag == "--put-delay":
            put_delay = float(value)
        else:
            raise SystemExit(f"kill_runner: unknown option {flag}")
    install(kill, trace, put_delay)
    sys.argv = ["bbackup", *args]
    run = entry_point()
    if run is None:
        runpy.run_module("bbackup", run_name="__main__")  # `python -m bbackup`
    else:
        run()


if __name__ == "__main__":
    main(sys.argv[1:])
