"""What `bbackup schedule` writes for users who prefer the system scheduler: a systemd
service and timer per job (`OnCalendar` is the job's schedule, `Persistent=true` catches
up a run missed while the machine was off), or crontab lines. Each calls `bbackup run
JOB`, which takes the job's lock, so the system scheduler and `bbackup service` never run
a job twice at once. Pure text generation; the CLI writes the files."""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence
from pathlib import Path

from bbackup.service.config import JobSettings
from bbackup.service.schedule import systemd_calendar

#: The comment that marks the crontab line of a job, so install and remove find it again.
CRON_MARK = "# bbackup job "


def unit_name(job: str) -> str:
    return f"bbackup-{job}"


def system_unit_directory(*, user: bool) -> Path:
    """Where systemd reads units: ~/.config/systemd/user with --user, else
    /etc/systemd/system."""
    if user:
        base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
        return Path(base) / "systemd" / "user"
    return Path("/etc/systemd/system")


def run_command(program: Sequence[str], job: str, config: Path) -> list[str]:
    return [*program, "run", job, "--config", str(config)]


def _systemd_quote(words: Sequence[str]) -> str:
    # systemd's ExecStart splits on spaces and honours double quotes; % starts a specifier.
    quoted = []
    for word in words:
        word = word.replace("%", "%%")
        if any(c in word for c in " \"\\'") or not word:
            word = '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'
        quoted.append(word)
    return " ".join(quoted)


def systemd_units(job: JobSettings, program: Sequence[str], config: Path) -> dict[str, str]:
    """The service and timer unit files of a scheduled job, by file name; ValueError if
    its schedule has no systemd calendar equivalent."""
    assert job.schedule is not None
    name = unit_name(job.name)
    calendar = systemd_calendar(job.schedule)
    service = f"""\
[Unit]
Description=bbackup job {job.name}
Documentation=man:bbackup(1)
Wants=network-online.target
After=network-online.target

[Service]
Type=oneshot
ExecStart={_systemd_quote(run_command(program, job.name, config))}
# Backups yield to interactive work.
Nice=10
IOSchedulingClass=idle
# On stop, SIGTERM lets the run end cleanly: what it uploaded is reused by the next one.
KillMode=mixed
TimeoutStopSec=120
"""
    timer = f"""\
[Unit]
Description=Schedule of bbackup job {job.name} ({job.schedule.text})

[Timer]
OnCalendar={calendar}
Persistent=true
Unit={name}.service

[Install]
WantedBy=timers.target
"""
    return {f"{name}.service": service, f"{name}.timer": timer}


def crontab_line(job: JobSettings, program: Sequence[str], config: Path, *, system: bool) -> str:
    """The crontab line of a scheduled job; a system crontab (/etc/cron.d) names the user."""
    assert job.schedule is not None
    command = " ".join(shlex.quote(w) for w in run_command(program, job.name, config))
    # cron turns % into a newline, and mails whatever a job prints: --quiet keeps errors only.
    command = command.replace("%", "\\%") + " --quiet"
    who = " root" if system else ""
    return f"{job.schedule.cron}{who} {command} {CRON_MARK}{job.name}"


def replace_cron_lines(existing: str, jobs: Sequence[str], new_lines: Sequence[str]) -> str:
    """`existing` crontab text without the lines of `jobs`, with `new_lines` appended."""
    kept = [
        line
        for line in existing.splitlines()
        if not any(line.endswith(f"{CRON_MARK}{job}") for job in jobs)
    ]
    return "".join(f"{line}\n" for line in [*kept, *new_lines])
