"""`bbackup service`: run every job of the config file on its schedule until SIGTERM,
logging one line per event; SIGHUP reloads the config."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import typer

from bbackup.cli.job_commands import ConfigOpt, JsonOpt, QuietOpt, print_event, repository_opener
from bbackup.cli.opening import run_async
from bbackup.cli.output import error_exit
from bbackup.service.config import ServiceConfig, load_config
from bbackup.service.daemon import Scheduler
from bbackup.service.drill_seam import available_drill_step
from bbackup.service.run import JobRunner


def register(app: typer.Typer) -> None:
    @app.command("service", help="Run every job on its schedule (SIGHUP reloads the config).")
    def service(
        config: ConfigOpt = None, as_json: JsonOpt = False, quiet: QuietOpt = False
    ) -> None:
        def log(event: dict[str, Any]) -> None:
            print_event(event, as_json=as_json, quiet=quiet)

        drill_step = available_drill_step()

        def make_runner(settings: ServiceConfig) -> JobRunner:
            return JobRunner(
                settings, repository_opener(as_json), on_event=log, drill_step=drill_step
            )

        async def main() -> None:
            scheduler = Scheduler(lambda: load_config(config), make_runner, on_event=log)
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            # SIGTERM (systemd's stop) and SIGINT stop the run in progress cleanly: its
            # report says interrupted, and what it uploaded is reused by the next backup.
            loop.add_signal_handler(signal.SIGTERM, stop.set)
            loop.add_signal_handler(signal.SIGINT, stop.set)
            loop.add_signal_handler(signal.SIGHUP, scheduler.reload)
            await scheduler.serve(stop)

        with error_exit(as_json):
            run_async(main())
