"""What a notification sends where (plain JSON webhook or healthchecks.io pings), and the
Prometheus text-file metrics of job states."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from bbackup.service.config import NotifySettings
from bbackup.service.metrics import render_metrics, write_metrics
from bbackup.service.notify import notification
from bbackup.service.state import JobState

REPORT = {"job": "docs", "result": "success", "bytes_added": 12}


def test_a_json_webhook_gets_the_report_on_the_events_it_asks_for() -> None:
    settings = NotifySettings(webhook="https://hooks.example/backup", on=("failure",))
    assert notification(settings, "success", REPORT) is None
    url, body = notification(settings, "failure", {**REPORT, "result": "failure"}) or ("", b"")
    assert url == "https://hooks.example/backup"
    assert json.loads(body) == {**REPORT, "result": "failure", "event": "failure"}


def test_healthchecks_style_pings_start_success_and_fail_urls() -> None:
    settings = NotifySettings(
        webhook="https://hc-ping.com/uuid",
        on=("start", "success", "partial", "failure"),
        style="healthchecks",
    )
    urls = [notification(settings, e, REPORT) for e in ("start", "success", "partial", "failure")]
    assert [u[0] if u else None for u in urls] == [
        "https://hc-ping.com/uuid/start",
        "https://hc-ping.com/uuid",
        "https://hc-ping.com/uuid/fail",
        "https://hc-ping.com/uuid/fail",
    ]


def test_metrics_name_each_job_and_are_written_whole(tmp_path: Path) -> None:
    started = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)
    states = {
        "docs": JobState(
            last={"result": "success", "duration_seconds": 4.5, "bytes_added": 1000, "files": 7},
            last_started=started,
            last_success=started,
        ),
        'odd"name': JobState(last={"result": "failure", "errors": 2}, last_started=started),
    }
    path = tmp_path / "textfile" / "bbackup.prom"
    write_metrics(path, states)
    text = path.read_text()
    assert f'bbackup_last_success_timestamp_seconds{{job="docs"}} {started.timestamp():.0f}' in text
    assert 'bbackup_last_run_duration_seconds{job="docs"} 4.500' in text
    assert 'bbackup_last_run_bytes_added{job="docs"} 1000' in text
    assert 'bbackup_last_run_success{job="odd\\"name"} 0' in text
    assert 'bbackup_last_run_errors{job="odd\\"name"} 2' in text
    assert text.count("# TYPE bbackup_last_run_files gauge") == 1
    assert [p.name for p in path.parent.iterdir()] == ["bbackup.prom"]  # no temp file left
    assert render_metrics({}) == "\n"
