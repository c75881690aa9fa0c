"""`bbackup status`: each job's last run (result, duration, bytes added), its next run,
its last successful restore drill, and the jobs that are overdue, from the reports and
job states on this machine."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import typer

from bbackup.cli.job_commands import ConfigOpt, JsonOpt
from bbackup.cli.output import echo, emit_json, error_exit
from bbackup.report_format import human_bytes
from bbackup.service.config import JobSettings, load_config
from bbackup.service.drill_seam import drills_available
from bbackup.service.schedule import first_due, local_now, overdue_since
from bbackup.service.state import JobState, StateDirectory


def job_status(job: JobSettings, state: JobState, now: datetime, *, drills: bool) -> dict[str, Any]:
    last = state.last or {}
    status: dict[str, Any] = {
        "job": job.name,
        "schedule": job.schedule.text if job.schedule else None,
        "last_run": last.get("started"),
        "result": last.get("result"),
        "duration_seconds": last.get("duration_seconds"),
        "bytes_added": last.get("bytes_added"),
        "files": last.get("files"),
        "snapshot_id": last.get("snapshot_id"),
        "error": last.get("error"),
        "last_success": state.last_success.isoformat() if state.last_success else None,
        "next_run": None,
        "overdue_since": None,
    }
    if job.schedule is not None:
        status["next_run"] = first_due(job.schedule, state.last_completed, now).isoformat()
        missed = overdue_since(job.schedule, state.last_success, now)
        status["overdue_since"] = missed.isoformat() if missed else None
    if drills or state.last_drill:
        status["last_drill"] = state.last_drill.isoformat() if state.last_drill else None
        status["last_drill_ok"] = state.last_drill_ok.isoformat() if state.last_drill_ok else None
        status["drill_coverage"] = state.drill_coverage
    return status


def _when(text: str | None) -> str:
    return text[:16].replace("T", " ") if text else "-"


def _proven(coverage: dict[str, Any] | None) -> str:
    """The share of the repository's data the drills have proven restorable."""
    if not coverage or not coverage.get("packs_total"):
        return "-"
    packs = f"{coverage['packs_proven']}/{coverage['packs_total']} packs"
    return f"{100 * coverage['fraction']:.0f}% ({packs})"


def register(app: typer.Typer) -> None:
    @app.command("status", help="Show each job's last and next run, and overdue jobs.")
    def status(
        config: ConfigOpt = None,
        as_json: JsonOpt = False,
        job: Annotated[list[str] | None, typer.Argument(help="Only these jobs.")] = None,
    ) -> None:
        with error_exit(as_json):
            settings = load_config(config)
            for name in job or []:
                settings.job(name)
            state = StateDirectory()
            now = local_now()
            drills = drills_available()
            rows = [
                job_status(j, state.job_state(j.name), now, drills=drills)
                for j in settings.jobs.values()
                if not job or j.name in job
            ]
            if as_json:
                emit_json({"event": "status", "now": now.isoformat(), "jobs": rows})
                return
            header = (
                f"{'JOB':<16} {'LAST RUN':<16}  {'RESULT':<11} {'TIME':>8} {'ADDED':>10}  NEXT RUN"
            )
            echo(header + ("  LAST GOOD DRILL   PROVEN" if drills else ""))
            for row in rows:
                duration = row["duration_seconds"]
                added = row["bytes_added"]
                next_run = (
                    "now"
                    if row["next_run"] and row["next_run"] <= now.isoformat()
                    else _when(row["next_run"])
                )
                result = row["result"] or "never"
                line = (
                    f"{row['job']:<16} {_when(row['last_run']):<16}  {result:<11} "
                    f"{'-' if duration is None else f'{duration:.1f}s':>8} "
                    f"{'-' if added is None else human_bytes(added):>10}  {next_run}"
                )
                if "last_drill_ok" in row:
                    line += f"  {_when(row['last_drill_ok']):<16}  {_proven(row['drill_coverage'])}"
                echo(line)
            for row in rows:
                if row["result"] in ("failure", "interrupted") and row["error"]:
                    echo(f"\n{row['job']}: last run {row['result']}: {row['error']}")
            overdue = [r for r in rows if r["overdue_since"]]
            for row in overdue:
                since = _when(row["last_success"]) if row["last_success"] else "never"
                echo(
                    f"\noverdue: {row['job']} missed its run of {_when(row['overdue_since'])} "
                    f"(last success: {since})"
                )
