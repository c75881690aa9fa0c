"""`bbackup schedule install|remove|show`: systemd units whose ExecStart runs the job and
whose OnCalendar is its schedule (accepted by `systemd-analyze calendar` where it is
installed), or crontab lines, written into a temporary directory."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from cli_harness import Cli

from bbackup.errors import ExitCode

SCHEDULES = {
    "nightly": ("daily 02:00", "*-*-* 02:00:00"),
    "hourly": ("hourly", "*-*-* *:00:00"),
    "weekly": ("weekly sun 03:00", "Sun *-*-* 03:00:00"),
    "monthly": ("monthly 1 04:00", "*-*-01 04:00:00"),
    "workdays": ("*/15 8-18 * * mon-fri", "Mon..Fri *-*-* 08..18:00/15:00"),
}


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    jobs = "".join(
        f'\n[jobs.{name}]\nrepository = "r"\nsources = ["/srv"]\nschedule = "{schedule}"\n'
        for name, (schedule, _) in SCHEDULES.items()
    )
    path.write_text(
        f'[repositories.r]\nurl = "/srv/backup"\n{jobs}\n[jobs.manual]\n'
        'repository = "r"\nsources = ["/home"]\n'
    )
    return path


def unit_setting(text: str, key: str) -> str:
    (value,) = re.findall(rf"^{key}=(.*)$", text, re.MULTILINE)
    return value


def test_install_writes_a_service_and_a_timer_per_scheduled_job(
    cli: Cli, config: Path, tmp_path: Path
) -> None:
    units = tmp_path / "units"
    result = cli("schedule", "install", "--config", config, "--unit-dir", units)
    assert result.exit_code == 0, result
    names = sorted(p.name for p in units.iterdir())
    assert names == sorted(
        f"bbackup-{job}.{kind}" for job in SCHEDULES for kind in ("service", "timer")
    )
    service = (units / "bbackup-nightly.service").read_text()
    exec_start = unit_setting(service, "ExecStart")
    assert exec_start.endswith(f" run nightly --config {config}")
    assert exec_start.startswith("/")  # an absolute program: timers have no PATH of ours
    assert unit_setting(service, "Type") == "oneshot"
    for job, (_, calendar) in SCHEDULES.items():
        timer = (units / f"bbackup-{job}.timer").read_text()
        assert unit_setting(timer, "OnCalendar") == calendar
        assert unit_setting(timer, "Persistent") == "true"
        assert unit_setting(timer, "Unit") == f"bbackup-{job}.service"


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"
)
@pytest.mark.parametrize("job", sorted(SCHEDULES))
def test_systemd_analyze_accepts_each_calendar(
    cli: Cli, config: Path, tmp_path: Path, job: str
) -> None:
    units = tmp_path / "units"
    assert cli("schedule", "install", job, "--config", config, "--unit-dir", units).exit_code == 0
    calendar = unit_setting((units / f"bbackup-{job}.timer").read_text(), "OnCalendar")
    checked = subprocess.run(
        ["systemd-analyze", "calendar", calendar], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stderr
    assert f"Normalized form: {calendar}" in checked.stdout


def test_remove_deletes_the_units(cli: Cli, config: Path, tmp_path: Path) -> None:
    units = tmp_path / "units"
    assert cli("schedule", "install", "--config", config, "--unit-dir", units).exit_code == 0
    (units / "unrelated.timer").write_text("[Timer]\n")
    result = cli("schedule", "remove", "--config", config, "--unit-dir", units)
    assert result.exit_code == 0, result
    assert [p.name for p in units.iterdir()] == ["unrelated.timer"]


def test_cron_install_replaces_its_own_lines_and_keeps_others(
    cli: Cli, config: Path, tmp_path: Path
) -> None:
    crontab = tmp_path / "crontab"
    crontab.write_text("MAILTO=ops@example.com\n5 4 * * * /usr/local/bin/rotate-logs\n")
    for _ in range(2):
        result = cli(
            "schedule",
            "install",
            "nightly",
            "--cron",
            "--user",
            "--config",
            config,
            "--crontab-file",
            crontab,
        )
        assert result.exit_code == 0, result
    lines = crontab.read_text().splitlines()
    assert lines[:2] == ["MAILTO=ops@example.com", "5 4 * * * /usr/local/bin/rotate-logs"]
    (entry,) = lines[2:]
    assert entry.startswith("0 2 * * * /")
    assert entry.endswith(f" run nightly --config {config} --quiet # bbackup job nightly")
    cli("schedule", "remove", "nightly", "--cron", "--config", config, "--crontab-file", crontab)
    assert crontab.read_text().splitlines() == lines[:2]


def test_show_prints_without_writing_and_a_job_without_schedule_is_refused(
    cli: Cli, config: Path
) -> None:
    result = cli("schedule", "show", "weekly", "--config", config)
    assert result.exit_code == 0, result
    assert "# bbackup-weekly.timer" in result.stdout
    assert "OnCalendar=Sun *-*-* 03:00:00" in result.stdout
    result = cli("schedule", "show", "manual", "--config", config)
    assert result.exit_code == ExitCode.USAGE
    assert "job manual has no schedule" in result.stderr


def test_a_cron_schedule_systemd_cannot_express_is_refused_by_name(
    cli: Cli, config: Path, tmp_path: Path
) -> None:
    config.write_text(config.read_text().replace('"daily 02:00"', '"0 3 1 * mon"'))
    result = cli("schedule", "install", "nightly", "--config", config, "--unit-dir", tmp_path)
    assert result.exit_code == ExitCode.USAGE
    assert "job nightly: schedule '0 3 1 * mon': cron runs when either" in result.stderr
    result = cli("schedule", "show", "nightly", "--cron", "--config", config)
    assert result.exit_code == 0 and result.stdout.startswith("0 3 1 * mon root ")
