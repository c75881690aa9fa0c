"""`bbackup config check` and `bbackup status`: the config's problems all named, each
job's next runs, and after runs each job's last result, its next run, and the jobs that
are overdue."""

from __future__ import annotations

import os
from pathlib import Path

from cli_harness import Cli, MakeTree

from bbackup.errors import ExitCode


def write_config(tmp_path: Path, repo: Path, source: Path) -> Path:
    config = tmp_path / "config.toml"
    config.write_text(
        f"""[repositories.local]
url = "{repo}"

[jobs.docs]
repository = "local"
sources = ["{source}"]
schedule = "* * * * *"
retention = {{ keep_last = 3 }}

[jobs.photos]
repository = "local"
sources = ["{source}"]
schedule = "daily 02:00"

[jobs.broken]
repository = "local"
sources = ["{source}/missing"]
"""
    )
    return config


def test_config_check_lists_each_jobs_next_runs(cli: Cli, repo: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path, repo, tmp_path)
    result = cli("config", "check", "--config", config)
    assert result.exit_code == 0, result
    assert f"{config}: valid, 1 repositories, 3 jobs" in result.stdout
    assert "job photos:" in result.stdout
    assert result.stdout.count(" 02:00") >= 3  # photos' next three nights
    assert "schedule: none (runs only with `bbackup run`)" in result.stdout
    assert f"warning: jobs.broken.sources: {tmp_path}/missing does not exist" in result.stderr
    events = cli("config", "check", "--config", config, "--json").event("config")
    assert len(events["jobs"]["docs"]["next_runs"]) == 3


def test_config_check_names_every_problem(cli: Cli, repo: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path, repo, tmp_path)
    text = config.read_text().replace("keep_last = 3", "keep_lats = 3")
    config.write_text(text.replace('"daily 02:00"', '"daily 02:60"'))
    result = cli("config", "check", "--config", config)
    assert result.exit_code == ExitCode.USAGE
    lines = result.stderr.splitlines()
    assert lines == [
        f"bbackup: error: {config}:8: jobs.docs.retention.keep_lats: unknown key "
        "(known: keep_last, keep_hourly, keep_daily, keep_weekly, keep_monthly, keep_yearly, "
        "keep_within, keep_within_hourly, keep_within_daily, keep_within_weekly, "
        "keep_within_monthly, keep_within_yearly, keep_tag)",
        f"bbackup: error: {config}:8: jobs.docs.retention: keeps nothing: give keep_daily, "
        "keep_last, ... (or leave retention out)",
        f"bbackup: error: {config}:13: jobs.photos.schedule: '02:60' is not a time of day: "
        "use HH:MM, e.g. 02:00",
    ]


def test_status_shows_last_runs_failures_and_overdue_jobs(
    cli: Cli, repo: Path, tmp_path: Path, make_tree: MakeTree
) -> None:
    source = make_tree(tmp_path / "src", {"a.txt": os.urandom(2048)})
    config = write_config(tmp_path, repo, source)
    assert cli("run", "docs", "--config", config).exit_code == 0
    assert cli("run", "broken", "--config", config).exit_code == 1
    status = cli("status", "--config", config, "--json").event("status")
    jobs = {row["job"]: row for row in status["jobs"]}
    assert jobs["docs"]["result"] == "success"
    assert jobs["docs"]["bytes_added"] >= 2048 and jobs["docs"]["files"] == 1
    assert jobs["docs"]["overdue_since"] is None
    assert jobs["docs"]["next_run"] > jobs["docs"]["last_run"]
    assert jobs["broken"]["result"] == "failure"
    assert "no such file or directory" in jobs["broken"]["error"]
    assert jobs["broken"]["next_run"] is None  # no schedule
    assert jobs["photos"]["result"] is None and jobs["photos"]["overdue_since"] is not None
    human = cli("status", "--config", config)
    assert human.exit_code == 0, human
    assert "docs" in human.stdout and "success" in human.stdout
    assert "broken: last run failure: backup failed:" in human.stdout
    assert "overdue: photos missed its run of" in human.stdout
    assert "(last success: never)" in human.stdout
