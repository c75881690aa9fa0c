"""`bbackup service` as a real process: a job due every minute that never ran is caught
up at start and leaves a snapshot; a second run of the job while the service runs it is
refused (the job never overlaps itself); SIGTERM stops the service with exit 0, also in
the middle of a run, leaving an interrupted report and no stale lock; SIGHUP reloads."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import pytest
from cli_harness import PASSWORD, Cli, MakeTree, Spec, run_subprocess

from bbackup.errors import ExitCode


class Service:
    """`bbackup service` in a subprocess, its output read line by line."""

    def __init__(self, config: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bbackup", "service", "--config", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        with contextlib.suppress(ValueError):  # closed by kill()
            for line in self.proc.stdout:
                self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, pattern: str, timeout: float = 30) -> str:
        """The first new line matching `pattern`; fails after `timeout` seconds."""
        while True:
            try:
                line = self._queue.get(timeout=timeout)
            except queue.Empty:
                pytest.fail(f"no line matching {pattern!r} in:\n" + "\n".join(self.lines))
            if line is None:
                pytest.fail(f"service exited before {pattern!r}:\n" + "\n".join(self.lines))
            self.lines.append(line)
            if re.search(pattern, line):
                return line

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=30)
        while (line := self._queue.get(timeout=5)) is not None:
            self.lines.append(line)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        assert self.proc.stdout is not None
        self.proc.stdout.close()


@pytest.fixture
def start_service() -> Iterator[type[Service]]:
    started: list[Service] = []

    class Started(Service):
        def __init__(self, config: Path) -> None:
            super().__init__(config)
            started.append(self)

    try:
        yield Started
    finally:
        for service in started:
            service.kill()


class JobConfig(Protocol):
    """The `job_config` fixture: back up `tree` (default: one small file) every minute as
    the job `docs` into `repo`, `before_hook` first; the config file's path."""

    def __call__(self, before_hook: str, tree: Spec | None = None) -> Path: ...


@pytest.fixture
def job_config(tmp_path: Path, repo: Path, make_tree: MakeTree) -> JobConfig:
    def write(before_hook: str, tree: Spec | None = None) -> Path:
        source = make_tree(tmp_path / "src", tree or {"a.txt": "alpha\n"})
        password_file = tmp_path / "password"
        password_file.write_text(PASSWORD + "\n")
        config = tmp_path / "config.toml"
        config.write_text(
            f"""
[repositories.local]
url = "{repo}"
password_file = "{password_file}"

[jobs.docs]
repository = "local"
sources = ["{source}"]
schedule = "* * * * *"
hooks = {{ before = "{before_hook}" }}
"""
        )
        return config

    return write


def snapshot_count(cli: Cli, repo: Path) -> int:
    return len(cli("snapshots", "-r", repo, "--json").snapshot_list())


def job_reports(home: Path) -> list[dict[str, object]]:
    folder = home / ".local" / "state" / "bbackup" / "reports" / "docs"
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def test_service_catches_up_a_due_job_refuses_an_overlap_and_stops_on_sigterm(
    cli: Cli,
    repo: Path,
    job_config: JobConfig,
    start_service: type[Service],
    isolated_env: Path,
) -> None:
    # The hook holds the run open until the second run has tried to start, however slow
    # the machine (a fixed sleep lost that race under load).
    gate = isolated_env / "overlap-tried"
    hook = f"while [ ! -e {gate} ]; do sleep 0.05; done"
    config = job_config(hook, {"a.txt": "alpha\n", "b.bin": os.urandom(3000)})
    service = start_service(config)
    service.wait_for(r"docs: due now \(missed or never run\)")
    service.wait_for(r"docs: before hook started")
    overlapping = run_subprocess("run", "docs", "--config", config)
    gate.touch()
    assert overlapping.exit_code == ExitCode.LOCKED, overlapping
    assert "job docs is already running" in overlapping.stderr
    service.wait_for(r"docs: success in ")
    service.wait_for(r"docs: next run \d{4}-\d\d-\d\dT\d\d:\d\d")
    assert service.stop() == 0, "\n".join(service.lines)
    # (A minute may have turned meanwhile and started the next run, which the stop ended.)
    assert snapshot_count(cli, repo) >= 1
    assert job_reports(isolated_env)[0]["result"] == "success"
    assert service.lines[-1].endswith("service: service stopped")


def test_sigterm_in_the_middle_of_a_run_exits_0_and_the_run_is_caught_up_next_start(
    cli: Cli,
    repo: Path,
    job_config: JobConfig,
    start_service: type[Service],
    isolated_env: Path,
) -> None:
    config = job_config("sleep 30")
    service = start_service(config)
    service.wait_for(r"docs: before hook started")
    assert service.stop() == 0, "\n".join(service.lines)
    (report,) = job_reports(isolated_env)
    assert report["result"] == "interrupted"
    assert snapshot_count(cli, repo) == 0
    # The interrupted run does not count: the next start runs the job at once, and the
    # job's lock went with the stopped process.
    config.write_text(config.read_text().replace("sleep 30", "true"))
    service = start_service(config)
    service.wait_for(r"docs: due now")
    service.wait_for(r"docs: success in ")
    assert service.stop() == 0
    assert snapshot_count(cli, repo) >= 1


def test_sighup_reloads_the_config_and_a_broken_one_is_kept_out(
    job_config: JobConfig, start_service: type[Service]
) -> None:
    config = job_config("true")
    service = start_service(config)
    service.wait_for(r"docs: success in ")
    config.write_text(config.read_text().replace('"* * * * *"', '"every minute"'))
    service.proc.send_signal(signal.SIGHUP)
    line = service.wait_for(r"reload failed")
    schedule_line = config.read_text().splitlines().index('schedule = "every minute"') + 1
    assert f"{config}:{schedule_line}: jobs.docs.schedule: 'every minute' is not" in line
    config.write_text(config.read_text().replace('"every minute"', '"daily 02:00"'))
    service.proc.send_signal(signal.SIGHUP)
    service.wait_for(r"config reloaded: 1 jobs")
    service.wait_for(r"docs: next run \d{4}-\d\d-\d\dT02:00")
    assert service.stop() == 0


def test_a_slot_whose_job_runs_elsewhere_is_skipped(
    cli: Cli,
    repo: Path,
    job_config: JobConfig,
    start_service: type[Service],
    isolated_env: Path,
) -> None:
    config = job_config("true")
    lock = isolated_env / ".local" / "state" / "bbackup" / "locks" / "docs.lock"
    lock.parent.mkdir(parents=True)
    with open(lock, "w") as held:  # as a `bbackup run docs` in progress holds it
        fcntl.flock(held, fcntl.LOCK_EX)
        service = start_service(config)
        service.wait_for(r"docs: skipped: job docs is already running")
        service.wait_for(r"docs: next run")
        assert service.stop() == 0
    assert snapshot_count(cli, repo) == 0


def test_jobs_sharing_a_repository_take_turns(
    cli: Cli, repo: Path, job_config: JobConfig, start_service: type[Service]
) -> None:
    config = job_config("sleep 0.5")
    text = config.read_text()
    config.write_text(
        text + text[text.index("[jobs.docs]") :].replace("[jobs.docs]", "[jobs.mail]")
    )
    service = start_service(config)
    service.wait_for(r"waiting for another job on the same repository")
    service.wait_for(r"(docs|mail): success in ")
    service.wait_for(r"(docs|mail): success in ")
    assert service.stop() == 0
    # The first four: a minute may have turned meanwhile and started the next runs.
    events = [
        re.sub(r"^\S+ ", "", line)
        for line in service.lines
        if re.search(r": (run started|success in)", line)
    ][:4]
    first, second = events[0].split(":")[0], events[2].split(":")[0]
    assert {first, second} == {"docs", "mail"}
    # The second job started only once the first had finished.
    assert [e.split(" ")[1:3] for e in events] == [
        ["run", "started"],
        ["success", "in"],
        ["run", "started"],
        ["success", "in"],
    ]
    assert events[1].startswith(first) and events[3].startswith(second)
    assert snapshot_count(cli, repo) >= 2
