"""Fixtures for the S3 integration tests: bbackup runs against an unreachable endpoint,
started early so their retry budget elapses while the other tests run."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest
from cli_harness import PASSWORD
from s3_harness import UNREACHABLE_COMMANDS, UnreachableRun

from s3_server import TEST_CREDENTIALS


@pytest.fixture(scope="session")
def unreachable_runs(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, UnreachableRun]]:
    """`snapshots` and `backup` against a port that refuses connections, already running.

    With the default retry budget such a run takes half a minute or more, so the runs
    start with the first test in this directory (see `_start_unreachable_runs_early`)
    and the tests that read them run last. The port stays bound (never listening) so no
    other server can take it meanwhile. The environment is built from scratch: a session
    fixture cannot use the per-test isolated environment.
    """
    home = tmp_path_factory.mktemp("unreachable-home")
    src = home / "src"
    src.mkdir()
    (src / "file.txt").write_text("never uploaded\n")
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{blocker.getsockname()[1]}"
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(home),
            **TEST_CREDENTIALS,
            "BBACKUP_S3_ENDPOINT": endpoint,
            "BBACKUP_PASSWORD": PASSWORD,
        }
        runs: dict[str, UnreachableRun] = {}
        threads = []
        try:
            for command in UNREACHABLE_COMMANDS:
                args = [command, "-r", "s3://bb-unreachable/repo"]
                args += [str(src)] if command == "backup" else []
                process = subprocess.Popen(
                    [sys.executable, "-m", "bbackup", *args],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    env=env,
                )
                runs[command] = UnreachableRun(command, endpoint, process)
                thread = threading.Thread(target=runs[command].collect, daemon=True)
                thread.start()
                threads.append(thread)
            yield runs
        finally:
            for run in runs.values():
                if run.process.poll() is None:
                    run.process.kill()
            for thread in threads:
                thread.join()


@pytest.fixture(autouse=True, scope="session")
def _start_unreachable_runs_early(request: pytest.FixtureRequest) -> None:
    """Start the unreachable-endpoint runs with the first test here, if any test needs them."""
    if any("unreachable_runs" in item.fixturenames for item in request.session.items):
        request.getfixturevalue("unreachable_runs")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the tests that wait for the unreachable-endpoint runs after all others."""
    items.sort(key=lambda item: "unreachable_runs" in getattr(item, "fixturenames", ()))
