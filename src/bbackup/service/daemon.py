"""The scheduler service (`bbackup service`): one asyncio task per scheduled job sleeps
until the job is due, then runs it. A run missed while the service was down is caught up
once at start; a job never overlaps itself (slots that pass while it runs are skipped, and
a run elsewhere holding the job's lock skips the slot); jobs that share a repository run
one after the other; SIGHUP reloads the config, SIGTERM stops the run in progress cleanly.
The timing rules are the pure functions of `schedule.py`."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime

from bbackup.errors import BbackupError
from bbackup.service.config import JobSettings, ServiceConfig
from bbackup.service.run import EventSink, JobRunner
from bbackup.service.schedule import due_after_run, first_due, local_now, skipped_slots
from bbackup.service.state import JobLocked, StateDirectory

#: The longest single sleep: a wall-clock jump (suspend, NTP) is noticed within this.
MAX_SLEEP_SECONDS = 30.0


class Scheduler:
    """Runs every scheduled job of a config on its schedule until stopped."""

    def __init__(
        self,
        load_config: Callable[[], ServiceConfig],
        make_runner: Callable[[ServiceConfig], JobRunner],
        *,
        state: StateDirectory | None = None,
        clock: Callable[[], datetime] = local_now,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        on_event: EventSink,
    ) -> None:
        """`clock` and `sleep` are the time the scheduler lives in: the wall clock and
        asyncio's sleep, or a fake pair that moves time on without waiting."""
        self.load_config = load_config
        self.make_runner = make_runner
        self.state = state or StateDirectory()
        self.clock = clock
        self.sleep = sleep
        self.on_event = on_event
        self.config = load_config()
        self.runner = make_runner(self.config)
        self._loops: dict[str, asyncio.Task[None]] = {}
        self._running: set[str] = set()
        self._restart_after_run: set[str] = set()
        #: One lock per repository URL: jobs sharing a repository take turns.
        self._repository_turns: dict[str, asyncio.Lock] = {}

    async def serve(self, stop: asyncio.Event) -> None:
        """Schedule every job until `stop` is set; then stop the runs in progress (each
        records an interrupted report) and return."""
        self._log("", "service", f"service started with {self.config.path}")
        for name in self.config.jobs:
            self._start_loop(name)
        await stop.wait()
        self._log("", "service", "stopping")
        loops = list(self._loops.values())
        for task in loops:
            task.cancel()
        await asyncio.gather(*loops, return_exceptions=True)
        self._log("", "service", "service stopped")

    def reload(self) -> None:
        """Read the config again (SIGHUP); keep the old one if the new one is invalid. Idle
        jobs are rescheduled at once, running ones when their run ends."""
        try:
            config = self.load_config()
        except BbackupError as exc:
            self._log("", "error", f"reload failed, keeping the old config: {exc.message}")
            return
        self.config = config
        self.runner = self.make_runner(config)
        self._log("", "service", f"config reloaded: {len(config.jobs)} jobs")
        for name, task in list(self._loops.items()):
            if name in self._running:
                self._restart_after_run.add(name)
            else:
                task.cancel()
                del self._loops[name]
        for name in config.jobs:
            if name not in self._loops:
                self._start_loop(name)

    def _start_loop(self, name: str) -> None:
        job = self.config.jobs[name]
        if job.schedule is None:
            self._log(name, "scheduled", "no schedule: runs only with `bbackup run`")
            return
        self._loops[name] = asyncio.create_task(self._job_loop(name), name=f"job {name}")

    async def _job_loop(self, name: str) -> None:
        job = self.config.jobs[name]
        schedule = job.schedule
        assert schedule is not None
        now = self.clock()
        due = first_due(schedule, self.state.job_state(name).last_completed, now)
        if due <= now:
            self._log(name, "scheduled", "due now (missed or never run)")
        while True:
            self._log(name, "scheduled", f"next run {due.isoformat(timespec='minutes')}")
            await self._sleep_until(due)
            started = self.clock()
            await self._run(self.config.jobs.get(name, job))
            finished = self.clock()
            if skipped := skipped_slots(schedule, started, finished):
                first = skipped[0].isoformat(timespec="minutes")
                what = (
                    f"slot {first}" if len(skipped) == 1 else f"{len(skipped)} slots from {first}"
                )
                self._log(name, "skipped", f"{what} skipped: the job was still running")
            if name in self._restart_after_run:
                self._restart_after_run.discard(name)
                del self._loops[name]
                if name in self.config.jobs:
                    self._start_loop(name)
                return
            due = due_after_run(schedule, started, finished)

    async def _run(self, job: JobSettings) -> None:
        url = self.config.repository_of(job).url
        turn = self._repository_turns.setdefault(url, asyncio.Lock())
        if turn.locked():
            self._log(job.name, "waiting", "waiting for another job on the same repository")
        async with turn:
            self._running.add(job.name)
            try:
                await self.runner.run(job.name)
            except JobLocked as exc:
                self._log(job.name, "skipped", f"skipped: {exc.message}")
            except BbackupError as exc:
                self._log(job.name, "error", exc.message)
            except Exception as exc:
                # One job's bug must not stop the others from being served.
                self._log(job.name, "error", f"internal error: {type(exc).__name__}: {exc}")
            finally:
                self._running.discard(job.name)

    async def _sleep_until(self, due: datetime) -> None:
        # Short sleeps against the wall clock, not one long one: a suspended machine wakes
        # to a due job at once.
        delay = (due - self.clock()).total_seconds()
        while delay > 0:
            await self.sleep(min(delay, MAX_SLEEP_SECONDS))
            delay = (due - self.clock()).total_seconds()

    def _log(self, job: str, event: str, message: str) -> None:
        level = "error" if event == "error" else "info"
        self.on_event({"event": event, "job": job or "service", "message": message, "level": level})
