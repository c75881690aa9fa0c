"""`bbackup run JOB`: a job of the config file runs its hooks, its backup (full or
incremental by rotation), its retention and prune, leaves a report, writes the metrics
file, notifies the webhook, and refuses to run twice at once."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from cli_harness import Cli, MakeTree

from bbackup.errors import ExitCode


class Webhook:
    """A local HTTP server on 127.0.0.1 that records every POST (path and JSON body)."""

    def __init__(self) -> None:
        received: list[tuple[str, dict[str, Any]]] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                received.append((self.path, json.loads(self.rfile.read(length))))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"OK")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.received = received
        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    server = Webhook()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def source(tmp_path: Path, make_tree: MakeTree) -> Path:
    return make_tree(tmp_path / "src", {"a.txt": "alpha\n", "sub": {"b.bin": os.urandom(5000)}})


def write_config(path: Path, repo: Path, source: Path, **job: str) -> Path:
    lines = [
        "[repositories.local]",
        f'url = "{repo}"',
        "",
        "[jobs.docs]",
        'repository = "local"',
        f'sources = ["{source}"]',
        *(f"{key} = {value}" for key, value in job.items()),
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


JobConfig = Callable[..., Path]


@pytest.fixture
def job_config(tmp_path: Path, repo: Path, source: Path) -> JobConfig:
    """Writes tmp_path/config.toml: the repository `local` and the job `docs` backing up
    `source`, with the job's other keys as given (TOML values)."""

    def write(**job: str) -> Path:
        return write_config(tmp_path / "config.toml", repo, source, **job)

    return write


def state_dir(home: Path) -> Path:
    return home / ".local" / "state" / "bbackup"


def reports(home: Path) -> list[dict[str, Any]]:
    return [
        json.loads(p.read_text())
        for p in sorted((state_dir(home) / "reports" / "docs").glob("*.json"))
    ]


def snapshot_ids(cli: Cli, repo: Path) -> list[str]:
    result = cli("snapshots", "-r", repo, "--json")
    assert result.exit_code == 0, result
    return [s["id"] for s in result.snapshot_list()]


def test_run_backs_up_then_applies_the_retention(
    cli: Cli, repo: Path, job_config: JobConfig, source: Path, tmp_path: Path, isolated_env: Path
) -> None:
    config = job_config(
        retention="{ keep_last = 2 }",
        full_every='"monthly"',
        prune='"always"',
        prune_grace='"0s"',
    )
    for _ in range(3):
        result = cli("run", "docs", "--config", config)
        assert result.exit_code == 0, result
    assert len(snapshot_ids(cli, repo)) == 2
    runs = reports(isolated_env)
    assert [r["result"] for r in runs] == ["success"] * 3
    # The rotation: no full backup existed, so the first is full; this month's others are not.
    assert [r["backup_type"] for r in runs] == ["full", "incremental", "incremental"]
    assert runs[-1]["forgotten"] == 1
    assert [s["name"] for s in runs[-1]["steps"]] == ["backup", "forget", "prune"]
    assert runs[-1]["files"] == 2 and runs[0]["bytes_added"] > 5000
    restored = tmp_path / "restored"
    assert cli("restore", "-r", repo, "latest", "--target", restored).exit_code == 0
    assert (restored / str(source).lstrip("/") / "a.txt").read_text() == "alpha\n"


def test_a_failing_before_hook_skips_the_backup_and_is_reported(
    cli: Cli, repo: Path, job_config: JobConfig, tmp_path: Path, isolated_env: Path
) -> None:
    seen = tmp_path / "after.txt"
    config = job_config(
        hooks=(
            '{ before = "echo dump failed >&2; exit 4", '
            f'after = "echo $BBACKUP_RESULT > {seen}" }}'
        ),
    )
    result = cli("run", "docs", "--config", config)
    assert result.exit_code == ExitCode.ERROR, result
    assert "before hook failed (exit code 4): backup skipped" in result.stderr
    assert snapshot_ids(cli, repo) == []
    (report,) = reports(isolated_env)
    assert report["result"] == "failure"
    steps = {s["name"]: s for s in report["steps"]}
    assert steps["before hook"]["details"]["output"] == "dump failed\n"
    assert steps["backup"]["result"] == "skipped"
    assert seen.read_text() == "failure\n"  # the after hook still ran, and knew


def test_a_passing_before_hook_runs_before_the_backup(
    cli: Cli, repo: Path, job_config: JobConfig, source: Path, tmp_path: Path
) -> None:
    config = job_config(
        hooks=f'{{ before = "echo dumped > {source}/db.sql" }}',
    )
    assert cli("run", "docs", "--config", config).exit_code == 0
    restored = tmp_path / "restored"
    assert cli("restore", "-r", repo, "latest", "--target", restored).exit_code == 0
    assert (restored / str(source).lstrip("/") / "db.sql").read_text() == "dumped\n"


def test_a_second_run_of_a_running_job_exits_locked(
    cli: Cli, repo: Path, job_config: JobConfig, isolated_env: Path
) -> None:
    config = job_config()
    lock = state_dir(isolated_env) / "locks" / "docs.lock"
    lock.parent.mkdir(parents=True)
    with open(lock, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        result = cli("run", "docs", "--config", config)
    assert result.exit_code == ExitCode.LOCKED, result
    assert "job docs is already running" in result.stderr
    assert snapshot_ids(cli, repo) == []
    assert cli("run", "docs", "--config", config).exit_code == 0


def test_run_wait_waits_for_the_running_one_to_end(
    cli: Cli, repo: Path, job_config: JobConfig, isolated_env: Path
) -> None:
    config = job_config()
    lock = state_dir(isolated_env) / "locks" / "docs.lock"
    lock.parent.mkdir(parents=True)
    held = open(lock, "w")  # noqa: SIM115 - closed by the timer, as a run ending
    fcntl.flock(held, fcntl.LOCK_EX)
    threading.Timer(0.5, held.close).start()
    result = cli("run", "docs", "--config", config, "--wait", "--json")
    assert result.exit_code == 0, result
    assert held.closed
    summary = result.events()[-1]
    assert summary["event"] == "summary" and summary["result"] == "success"
    assert summary["snapshot_id"] == snapshot_ids(cli, repo)[0]


def test_the_webhook_receives_the_report(
    cli: Cli, repo: Path, job_config: JobConfig, webhook: Webhook
) -> None:
    config = job_config(
        notify=f'{{ webhook = "{webhook.url}/hook", on = ["start", "success", "failure"] }}',
    )
    assert cli("run", "docs", "--config", config).exit_code == 0
    assert [(path, body["event"]) for path, body in webhook.received] == [
        ("/hook", "start"),
        ("/hook", "success"),
    ]
    report = webhook.received[1][1]
    assert report["job"] == "docs" and report["result"] == "success"
    assert report["snapshot_id"] == snapshot_ids(cli, repo)[0]


def test_healthchecks_style_pings_start_then_fail(
    cli: Cli, repo: Path, job_config: JobConfig, webhook: Webhook
) -> None:
    config = job_config(
        hooks='{ before = "false" }',
        notify=f'{{ webhook = "{webhook.url}/ping/abc", style = "healthchecks" }}',
    )
    assert cli("run", "docs", "--config", config).exit_code == ExitCode.ERROR
    assert [path for path, _ in webhook.received] == ["/ping/abc/start", "/ping/abc/fail"]
    assert "before hook failed" in webhook.received[1][1]["error"]


def test_an_unreachable_webhook_never_fails_the_backup(
    cli: Cli, repo: Path, job_config: JobConfig
) -> None:
    config = job_config(
        notify='{ webhook = "http://127.0.0.1:9/hook", on = ["success"], timeout = 2 }',
    )
    result = cli("run", "docs", "--config", config)
    assert result.exit_code == 0, result
    assert "notification success to http://127.0.0.1:9/hook failed" in result.stderr
    assert len(snapshot_ids(cli, repo)) == 1


def test_the_metrics_file_has_each_jobs_last_success(
    cli: Cli, repo: Path, job_config: JobConfig, tmp_path: Path
) -> None:
    metrics = tmp_path / "metrics" / "bbackup.prom"
    config = job_config()
    config.write_text(f'metrics_file = "{metrics}"\n' + config.read_text())
    assert cli("run", "docs", "--config", config).exit_code == 0
    text = metrics.read_text()
    assert "# TYPE bbackup_last_success_timestamp_seconds gauge" in text
    assert 'bbackup_last_run_success{job="docs"} 1' in text
    assert 'bbackup_last_run_files{job="docs"} 2' in text
    assert 'bbackup_last_run_errors{job="docs"} 0' in text


def test_an_unknown_job_and_a_bad_config_are_usage_errors(
    cli: Cli, repo: Path, job_config: JobConfig
) -> None:
    config = job_config()
    result = cli("run", "nosuch", "--config", config)
    assert result.exit_code == ExitCode.USAGE
    assert "no job 'nosuch'" in result.stderr and "jobs: docs" in result.stderr
    config.write_text(config.read_text() + 'schedule = "daily 2am"\n')
    result = cli("run", "docs", "--config", config)
    assert result.exit_code == ExitCode.USAGE
    assert f"{config}:7: jobs.docs.schedule: '2am' is not a time of day" in result.stderr


def test_sigterm_stops_a_run_with_the_interrupted_code_and_report(
    repo: Path, job_config: JobConfig, isolated_env: Path, password: str
) -> None:
    config = job_config(hooks='{ before = "sleep 30" }')
    proc = subprocess.Popen(
        [sys.executable, "-m", "bbackup", "run", "docs", "--config", str(config)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if "before hook started" in line:
            break
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == ExitCode.INTERRUPTED, stderr
    assert "job docs stopped; the next backup reuses what was uploaded" in stderr
    (report,) = reports(isolated_env)
    assert report["result"] == "interrupted"


def test_a_wrong_password_is_a_reported_failure_naming_the_repository(
    cli: Cli,
    repo: Path,
    job_config: JobConfig,
    tmp_path: Path,
    isolated_env: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    password_file = tmp_path / "wrong"
    password_file.write_text("not the password\n")
    config = job_config()
    config.write_text(
        config.read_text().replace(
            f'url = "{repo}"', f'url = "{repo}"\npassword_file = "{password_file}"'
        )
    )
    # BBACKUP_PASSWORD (the right password) stays set: the job's own password file wins.
    result = cli("run", "docs", "--config", config)
    assert result.exit_code == ExitCode.WRONG_PASSWORD, result
    (report,) = reports(isolated_env)
    assert report["result"] == "failure"
    assert report["error"].startswith("repository local: Wrong password")
