"""`bbackup config check`: validate the config file, naming every problem, and show what
each job will do and when it runs next."""

from __future__ import annotations

import os

import typer

from bbackup.cli.job_commands import ConfigOpt, JsonOpt
from bbackup.cli.output import echo, emit_json, error_exit, fail, warn
from bbackup.errors import ExitCode
from bbackup.service.config import ConfigError, JobSettings, ServiceConfig, load_config
from bbackup.service.schedule import local_now

#: How many upcoming runs `config check` lists per job.
UPCOMING = 3


def describe_job(job: JobSettings) -> dict[str, object]:
    return {
        "repository": job.repository,
        "sources": list(job.sources),
        "schedule": job.schedule.text if job.schedule else None,
        "cron": job.schedule.cron if job.schedule else None,
        "full_every": job.full_every,
        "retention": str(job.retention) if job.retention else None,
        "prune": job.prune if job.retention else "never (no retention)",
        "hooks": {"before": job.hooks.before, "after": job.hooks.after},
        "notify": {"webhook": job.notify.webhook, "on": list(job.notify.on)}
        if job.notify.webhook
        else None,
    }


def config_warnings(settings: ServiceConfig) -> list[str]:
    """What is valid but will probably fail when a job runs on this machine."""
    found = []
    for repo in settings.repositories.values():
        if repo.password_file and not os.access(repo.password_file, os.R_OK):
            found.append(
                f"repositories.{repo.name}.password_file: cannot read {repo.password_file}"
            )
    for job in settings.jobs.values():
        for source in job.sources:
            if not os.path.lexists(os.path.expanduser(source)):
                found.append(f"jobs.{job.name}.sources: {source} does not exist")
    return found


def register(app: typer.Typer) -> None:
    config_app = typer.Typer(help="Check the job configuration file.", no_args_is_help=True)
    app.add_typer(config_app, name="config")

    @config_app.command("check", help="Validate the config file and show each job's next runs.")
    def check(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
        with error_exit(as_json):
            try:
                settings = load_config(config)
            except ConfigError as exc:
                if as_json:
                    emit_json({"event": "config", "valid": False, "problems": exc.problems})
                    raise typer.Exit(ExitCode.USAGE) from None
                for problem in exc.problems[:-1]:
                    warn(f"bbackup: error: {problem}")
                fail(exc.problems[-1], ExitCode.USAGE)
                return
            now = local_now()
            jobs = {}
            for name, job in settings.jobs.items():
                runs = job.schedule.upcoming(now, UPCOMING) if job.schedule else []
                jobs[name] = {**describe_job(job), "next_runs": [r.isoformat() for r in runs]}
            if as_json:
                emit_json(
                    {
                        "event": "config",
                        "valid": True,
                        "path": str(settings.path),
                        "jobs": jobs,
                        "warnings": config_warnings(settings),
                    }
                )
                return
            counts = f"{len(settings.repositories)} repositories, {len(jobs)} jobs"
            echo(f"{settings.path}: valid, {counts}")
            for line in config_warnings(settings):
                warn(f"warning: {line}")
            for name, job in settings.jobs.items():
                repo = settings.repository_of(job)
                echo(f"\njob {name}: {', '.join(job.sources)} -> {job.repository} ({repo.url})")
                if job.schedule is None:
                    echo("  schedule: none (runs only with `bbackup run`)")
                else:
                    echo(f"  schedule: {job.schedule.text} (cron {job.schedule.cron})")
                    upcoming = job.schedule.upcoming(now, UPCOMING)
                    echo("  next runs: " + ", ".join(f"{r:%Y-%m-%d %H:%M}" for r in upcoming))
                echo(f"  full backup every: {job.full_every}")
                if job.retention:
                    echo(f"  retention: {job.retention}; prune {job.prune}")
