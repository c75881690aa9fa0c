"""The `bbackup` entry point leaves without the interpreter's teardown once a command is
done (`cli.fast_exit.exit_now`): what the command printed must still arrive in full, and the
exit status must be the one the command gave."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bbackup.cli.fast_exit import exit_status

#: As the command runs from a shell: stdout block-buffered when it is a pipe.
BUFFERED = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}


def _child(code: str, **env: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-c", "from bbackup.cli.fast_exit import exit_now\n" + code],
        capture_output=True,
        timeout=60,
        env={**BUFFERED, **env},
    )


@pytest.mark.parametrize(("code", "status"), [(None, 0), (0, 0), (12, 12), ("boom", 1)])
def test_exit_status_follows_sys_exit(code: object, status: int) -> None:
    assert exit_status(code) == status


def test_buffered_output_is_flushed_before_leaving() -> None:
    # Far more than a pipe holds: stdout is block-buffered into a pipe, so most of it
    # is still in Python's buffer when exit_now is called.
    done = _child(
        "import sys\nsys.stdout.write('x' * 1_000_003)\nsys.stderr.write('e')\nexit_now(3)"
    )
    assert done.returncode == 3
    assert done.stdout == b"x" * 1_000_003
    assert done.stderr == b"e"


def test_switched_off_the_interpreter_exits_as_usual_with_the_same_result() -> None:
    done = _child(
        "import atexit, sys\natexit.register(lambda: print('teardown ran'))\n"
        "sys.stdout.write('out\\n')\nexit_now(3)",
        BBACKUP_NO_FAST_EXIT="1",
    )
    assert done.returncode == 3
    assert done.stdout == b"out\nteardown ran\n"
    fast = _child("import atexit\natexit.register(lambda: print('teardown ran'))\nexit_now(3)")
    assert (fast.returncode, fast.stdout) == (3, b"")


def test_a_message_goes_to_stderr_with_status_1() -> None:
    done = _child("exit_now('no repository given')")
    assert done.returncode == 1
    assert done.stderr.decode().strip() == "no repository given"


def test_output_to_a_closed_pipe_gives_141_as_sigpipe_would() -> None:
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys\nfrom bbackup.cli.fast_exit import exit_now\n"
            "sys.stdout.write('unread')\nsys.stdin.read()\nexit_now(0)",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=BUFFERED,
    )
    assert child.stdout is not None and child.stdin is not None
    child.stdout.close()  # the reader goes away before the output is flushed
    child.stdin.close()
    assert child.wait(timeout=60) == 141


def test_the_command_line_exits_with_the_command_status() -> None:
    bad_url = subprocess.run(
        [sys.executable, "-m", "bbackup", "snapshots", "--repo", "s3://"],
        capture_output=True,
        timeout=120,
        env={**BUFFERED, "BBACKUP_PASSWORD": "x"},
    )
    assert bad_url.returncode == 16  # malformed repository URL (README, exit codes)
    assert bad_url.stderr.decode().strip() == (
        "bbackup: error: malformed S3 URL 's3://': use s3://bucket[/prefix]"
    )
    version = subprocess.run(
        [sys.executable, "-m", "bbackup", "--version"], capture_output=True, timeout=120
    )
    assert version.returncode == 0
    assert version.stdout.decode().split()[-1][0].isdigit()
