"""`bbackup run JOB`: run one job of the config file now (hooks, backup, forget, prune,
drill when due, report); SIGTERM stops it cleanly (exit 130, an interrupted report)."""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Annotated

import typer

from bbackup.cli.job_commands import (
    ConfigOpt,
    JsonOpt,
    QuietOpt,
    print_event,
    repository_opener,
)
from bbackup.cli.opening import run_async
from bbackup.cli.output import emit_json, error_exit
from bbackup.cli.progress import progress_reporter
from bbackup.errors import Interrupted
from bbackup.service.config import load_config
from bbackup.service.drill_seam import available_drill_step
from bbackup.service.run import JobRunner
from bbackup.service.state import JobLocked, RunReport


def register(app: typer.Typer) -> None:
    @app.command("run", help="Run a job of the config file now.")
    def run(
        job: Annotated[str, typer.Argument(help="The job's name in the config file.")],
        config: ConfigOpt = None,
        wait: Annotated[
            bool, typer.Option("--wait", help="If the job is running, wait for it to end.")
        ] = False,
        as_json: JsonOpt = False,
        quiet: QuietOpt = False,
    ) -> None:
        with error_exit(as_json):
            settings = load_config(config)
            runner = JobRunner(
                settings,
                repository_opener(as_json),
                on_event=lambda e: print_event(e, as_json=as_json, quiet=quiet),
                drill_step=available_drill_step(),
            )
            start = time.monotonic()

            def sample() -> dict[str, object]:
                archiver = runner.archiver
                if archiver is None:
                    return {"job": job, "files": 0, "bytes": 0, "seconds": 0.0}
                p = archiver.progress
                return {
                    "job": job,
                    "files": p.files,
                    "bytes": p.bytes_seen,
                    "bytes_read": p.bytes_read,
                    "errors": p.errors,
                    "seconds": time.monotonic() - start,
                }

            async def run_job() -> RunReport:
                if quiet:
                    return await runner.run(job, wait=wait)
                async with progress_reporter(sample, as_json=as_json, label=job):
                    return await runner.run(job, wait=wait)

            async def main() -> RunReport:
                # systemd stops a timer's run with SIGTERM: end it as the service does, with
                # an interrupted report, instead of dying mid-step.
                task = asyncio.current_task()
                assert task is not None
                asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
                try:
                    return await run_job()
                except JobLocked as exc:
                    raise JobLocked(f"{exc.message}: pass --wait to wait for it") from None
                except asyncio.CancelledError:
                    raise Interrupted(
                        f"job {job} stopped; the next backup reuses what was uploaded"
                    ) from None

            report = run_async(main())
        if as_json:
            # As for `backup`, the last line is the summary: here the run's whole report.
            emit_json({"event": "summary", **report.to_dict()})
        if report.exit_code:
            raise typer.Exit(report.exit_code)
