"""The Prometheus text-file metrics of every job (for node_exporter's textfile
collector): last success time, duration, bytes added, files, errors and drill result,
rewritten atomically after each run so the collector never reads half a file."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from bbackup.service.state import JobState, write_atomically

_HELP = {
    "bbackup_last_run_timestamp_seconds": "When the job's last run started.",
    "bbackup_last_success_timestamp_seconds": "When the job last succeeded.",
    "bbackup_last_run_success": "1 if the job's last run succeeded, else 0.",
    "bbackup_last_run_duration_seconds": "How long the job's last run took.",
    "bbackup_last_run_bytes_added": "Bytes the last run added to the repository.",
    "bbackup_last_run_files": "Files in the last run's snapshot.",
    "bbackup_last_run_errors": "Files the last run could not back up.",
    "bbackup_last_drill_success_timestamp_seconds": "When a restore drill of the job last passed.",
    "bbackup_last_drill_success": "1 if the job's last restore drill passed, else 0.",
    "bbackup_drill_proven_ratio": "Share of the repository's data drills have proven restorable.",
}


def render_metrics(states: Mapping[str, JobState]) -> str:
    """Every job's metrics in the Prometheus text exposition format."""
    samples: dict[str, list[str]] = {name: [] for name in _HELP}
    for job, state in sorted(states.items()):
        escaped = job.replace("\\", "\\\\").replace('"', '\\"')
        label = f'{{job="{escaped}"}}'
        last = state.last or {}
        if state.last_started:
            samples["bbackup_last_run_timestamp_seconds"].append(
                f"{label} {state.last_started.timestamp():.0f}"
            )
        if state.last_success:
            samples["bbackup_last_success_timestamp_seconds"].append(
                f"{label} {state.last_success.timestamp():.0f}"
            )
        if last:
            success = int(last.get("result") == "success")
            samples["bbackup_last_run_success"].append(f"{label} {success}")
            samples["bbackup_last_run_duration_seconds"].append(
                f"{label} {float(last.get('duration_seconds') or 0):.3f}"
            )
            samples["bbackup_last_run_bytes_added"].append(
                f"{label} {int(last.get('bytes_added') or 0)}"
            )
            samples["bbackup_last_run_files"].append(f"{label} {int(last.get('files') or 0)}")
            samples["bbackup_last_run_errors"].append(f"{label} {int(last.get('errors') or 0)}")
        if state.last_drill_ok:
            samples["bbackup_last_drill_success_timestamp_seconds"].append(
                f"{label} {state.last_drill_ok.timestamp():.0f}"
            )
        if state.last_drill:
            ok = int(state.last_drill_ok is not None and state.last_drill_ok >= state.last_drill)
            samples["bbackup_last_drill_success"].append(f"{label} {ok}")
        coverage = state.drill_coverage or {}
        if isinstance(coverage.get("fraction"), (int, float)):
            samples["bbackup_drill_proven_ratio"].append(f"{label} {coverage['fraction']:.4f}")
    lines: list[str] = []
    for name, values in samples.items():
        if not values:
            continue
        lines += [f"# HELP {name} {_HELP[name]}", f"# TYPE {name} gauge"]
        lines += [f"{name}{value}" for value in values]
    return "\n".join(lines) + "\n"


def write_metrics(path: Path, states: Mapping[str, JobState]) -> None:
    write_atomically(path, render_metrics(states))
