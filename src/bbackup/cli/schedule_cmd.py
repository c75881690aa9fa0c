"""`bbackup schedule install|remove|show`: hand the jobs' schedules to systemd timers or
cron, for users who prefer the system scheduler to `bbackup service`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from bbackup.cli.job_commands import ConfigOpt
from bbackup.cli.output import echo, error_exit
from bbackup.errors import BbackupError, UsageError
from bbackup.service.config import JobSettings, ServiceConfig, default_config_path, load_config
from bbackup.service.system_units import (
    crontab_line,
    replace_cron_lines,
    system_unit_directory,
    systemd_units,
    unit_name,
)

JobsArg = Annotated[
    list[str] | None, typer.Argument(help="Jobs (default: every job with a schedule).")
]
CronOpt = Annotated[
    bool, typer.Option("--cron/--systemd", help="A crontab entry instead of systemd timers.")
]
UserOpt = Annotated[
    bool,
    typer.Option("--user", help="The user's systemd manager or crontab, not the system's."),
]
UnitDirOpt = Annotated[
    Path | None,
    typer.Option(help="Write the units here, and do not call systemctl."),
]
CrontabFileOpt = Annotated[
    Path | None,
    typer.Option(help="Edit this crontab file instead of the crontab (or /etc/cron.d/bbackup)."),
]

#: The system crontab that `schedule install --cron` (without --user) writes.
SYSTEM_CRONTAB = Path("/etc/cron.d/bbackup")


def bbackup_program() -> list[str]:
    """How the scheduler starts bbackup: the `bbackup` on PATH, else this interpreter."""
    found = shutil.which("bbackup")
    return [os.path.abspath(found)] if found else [sys.executable, "-m", "bbackup"]


def scheduled_jobs(settings: ServiceConfig, names: list[str] | None) -> list[JobSettings]:
    jobs = [settings.job(n) for n in names] if names else list(settings.jobs.values())
    unscheduled = [j.name for j in jobs if j.schedule is None]
    if names and unscheduled:
        raise UsageError(f"job {unscheduled[0]} has no schedule in {settings.path}")
    jobs = [j for j in jobs if j.schedule is not None]
    if not jobs:
        raise UsageError(f"no job in {settings.path} has a schedule")
    return jobs


def config_path(config: Path | None) -> Path:
    # The units must name the config by absolute path: they do not run in this directory.
    return (config or default_config_path()).resolve()


def _systemctl(user: bool, *args: str) -> None:
    command = ["systemctl", *(["--user"] if user else []), *args]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BbackupError(f"{' '.join(command)} failed: {done.stderr.strip()}")
    echo(f"ran: {' '.join(command)}")


#: Other lines of a crontab may hold bytes that are not UTF-8; they are written back as read.
_FOREIGN_BYTES = "surrogateescape"


def _read_crontab(user: bool, crontab_file: Path | None) -> str:
    if crontab_file is not None or not user:
        path = crontab_file or SYSTEM_CRONTAB
        return path.read_text(errors=_FOREIGN_BYTES) if path.exists() else ""
    done = subprocess.run(
        ["crontab", "-l"], capture_output=True, errors=_FOREIGN_BYTES, check=False
    )
    return done.stdout if done.returncode == 0 else ""  # "no crontab for user" is empty


def _write_crontab(user: bool, crontab_file: Path | None, text: str) -> None:
    if crontab_file is not None or not user:
        path = crontab_file or SYSTEM_CRONTAB
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, errors=_FOREIGN_BYTES)
        echo(f"wrote {path}")
        return
    done = subprocess.run(
        ["crontab", "-"], input=text, capture_output=True, errors=_FOREIGN_BYTES, check=False
    )
    if done.returncode != 0:
        raise BbackupError(f"crontab - failed: {done.stderr.strip()}")
    echo("updated the crontab")


def _units(jobs: list[JobSettings], program: list[str], config: Path) -> dict[str, str]:
    """The units of the jobs; the same serve a user's and the system's manager."""
    units: dict[str, str] = {}
    for job in jobs:
        try:
            units.update(systemd_units(job, program, config))
        except ValueError as exc:
            schedule = job.schedule.text if job.schedule else ""
            raise UsageError(f"job {job.name}: schedule {schedule!r}: {exc}") from None
    return units


def register(app: typer.Typer) -> None:
    schedule_app = typer.Typer(
        help="Schedule jobs with systemd timers or cron instead of `bbackup service`.",
        no_args_is_help=True,
    )
    app.add_typer(schedule_app, name="schedule")

    @schedule_app.command("show", help="Print the units or crontab lines install would write.")
    def show(
        jobs: JobsArg = None, config: ConfigOpt = None, cron: CronOpt = False, user: UserOpt = False
    ) -> None:
        with error_exit():
            settings = load_config(config)
            selected = scheduled_jobs(settings, jobs)
            program, path = bbackup_program(), config_path(config)
            if cron:
                for job in selected:
                    echo(crontab_line(job, program, path, system=not user))
                return
            for name, text in _units(selected, program, path).items():
                echo(f"# {name}\n{text}")

    @schedule_app.command("install", help="Write and enable systemd timers or crontab lines.")
    def install(
        jobs: JobsArg = None,
        config: ConfigOpt = None,
        cron: CronOpt = False,
        user: UserOpt = False,
        unit_dir: UnitDirOpt = None,
        crontab_file: CrontabFileOpt = None,
    ) -> None:
        with error_exit():
            settings = load_config(config)
            selected = scheduled_jobs(settings, jobs)
            program, path = bbackup_program(), config_path(config)
            if cron:
                lines = [crontab_line(j, program, path, system=not user) for j in selected]
                existing = _read_crontab(user, crontab_file)
                names = [j.name for j in selected]
                _write_crontab(user, crontab_file, replace_cron_lines(existing, names, lines))
                return
            units = _units(selected, program, path)
            directory = unit_dir or system_unit_directory(user=user)
            directory.mkdir(parents=True, exist_ok=True)
            for name, text in units.items():
                (directory / name).write_text(text)
                echo(f"wrote {directory / name}")
            if unit_dir is not None:
                return
            if shutil.which("systemctl") is None:
                echo("systemctl not found: enable the timers with systemctl enable --now")
                return
            _systemctl(user, "daemon-reload")
            _systemctl(user, "enable", "--now", *(f"{unit_name(j.name)}.timer" for j in selected))

    @schedule_app.command("remove", help="Disable and delete the timers or crontab lines.")
    def remove(
        jobs: JobsArg = None,
        config: ConfigOpt = None,
        cron: CronOpt = False,
        user: UserOpt = False,
        unit_dir: UnitDirOpt = None,
        crontab_file: CrontabFileOpt = None,
    ) -> None:
        with error_exit():
            settings = load_config(config)
            names = jobs or list(settings.jobs)
            if cron:
                existing = _read_crontab(user, crontab_file)
                _write_crontab(user, crontab_file, replace_cron_lines(existing, names, []))
                return
            directory = unit_dir or system_unit_directory(user=user)
            present = [n for n in names if (directory / f"{unit_name(n)}.timer").exists()]
            if unit_dir is None and present and shutil.which("systemctl") is not None:
                _systemctl(user, "disable", "--now", *(f"{unit_name(n)}.timer" for n in present))
            for name in names:
                for suffix in (".timer", ".service"):
                    unit = directory / f"{unit_name(name)}{suffix}"
                    if unit.exists():
                        unit.unlink()
                        echo(f"removed {unit}")
            if unit_dir is None and present and shutil.which("systemctl") is not None:
                _systemctl(user, "daemon-reload")
