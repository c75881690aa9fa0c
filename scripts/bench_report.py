"""Summaries of scripts/bench_real.py runs: medians per tool and phase, ratios bbackup /
restic against the targets of issue #19, a Markdown report and a dependency-free SVG chart.

    python scripts/bench_report.py bench-out/real.json   # rewrites real.md and real.svg
    python scripts/bench_report.py OUT.json --from-log bench_real.log   # a run cut short
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from html import escape
from pathlib import Path
from typing import Any

MiB = 1024 * 1024
METRICS = ("wall_s", "cpu_s", "max_rss_mib", "repo_bytes")
REQUESTS = ("PUT", "GET", "HEAD", "LIST", "DELETE", "POST")
#: (workload, backend) → phase → limit on the wall-time ratio bbackup / restic 0.18;
#: "peak_rss" is the largest peak RSS over the phases.
TARGETS: dict[tuple[str, str], dict[str, float]] = {
    ("usr-share", "local"): {
        "backup_first": 0.7,
        "backup_unchanged": 0.6,
        "restore": 0.6,
        "peak_rss": 1.0,
    },
    ("small-files", "local"): {
        "backup_first": 0.7,
        "backup_unchanged": 0.6,
        "restore": 0.7,
        "peak_rss": 1.0,
    },
    ("stdlib", "local"): {
        "backup_first": 0.35,
        "backup_unchanged": 0.45,
        "restore": 0.6,
        "peak_rss": 1.0,
    },
    ("stdlib-s3", "s3"): {
        "backup_first": 0.6,
        "backup_unchanged": 0.6,
        "backup_unchanged_nocache": 0.6,
        "restore_nocache": 0.6,
        "peak_rss": 1.0,
    },
}
COLUMNS = (
    ("backup_first", "first backup"),
    ("backup_unchanged", "unchanged re-backup"),
    ("backup_unchanged_nocache", "unchanged, empty cache"),
    ("restore", "restore"),
    ("restore_nocache", "restore, empty cache"),
    ("peak_rss", "peak RSS"),
)


def _get(m: Any, key: str) -> Any:
    return m[key] if isinstance(m, dict) else getattr(m, key)


def summarise(measurements: list[Any]) -> dict[str, Any]:
    """workload → backend → phase → tool → {metric: median over successful repeats}."""
    groups: dict[tuple[str, str, str, str], list[Any]] = {}
    for m in measurements:
        key = (_get(m, "workload"), _get(m, "backend"), _get(m, "phase"), _get(m, "tool"))
        groups.setdefault(key, []).append(m)
    out: dict[str, Any] = {}
    for (wl, backend, phase, tool), ms in groups.items():
        ok = [m for m in ms if _get(m, "exit_code") == 0]
        row: dict[str, Any] = {"runs": len(ms), "failed": len(ms) - len(ok)}
        if ok:
            for metric in METRICS:
                row[metric] = statistics.median(float(_get(m, metric)) for m in ok)
            for op in REQUESTS:
                row[op] = statistics.median(_get(m, "requests").get(op, 0) for m in ok)
            row["wall_all"] = [round(float(_get(m, "wall_s")), 3) for m in ms]
        out.setdefault(wl, {}).setdefault(backend, {}).setdefault(phase, {})[tool] = row
    for backends in out.values():
        for phases in backends.values():
            for row in phases.values():
                b, r = row.get("bbackup", {}), row.get("restic", {})
                row["ratio"] = {k: ratio(b.get(k), r.get(k)) for k in METRICS}
    return out


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def peak_rss(phases: dict[str, Any], tool: str) -> float | None:
    vals = [
        row[tool]["max_rss_mib"] for row in phases.values() if "max_rss_mib" in row.get(tool, {})
    ]
    return max(vals) if vals else None


def cell_ratio(phases: dict[str, Any], column: str, metric: str = "wall_s") -> float | None:
    if column == "peak_rss":
        return ratio(peak_rss(phases, "bbackup"), peak_rss(phases, "restic"))
    return phases.get(column, {}).get("ratio", {}).get(metric)


def _f(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def ratio_rows(
    summary: dict[str, Any], metric: str = "wall_s"
) -> list[tuple[str, str, list[tuple[float | None, float | None]]]]:
    """(workload, backend, [(ratio, limit) per column])."""
    rows = []
    for wl, backends in summary.items():
        for backend, phases in backends.items():
            limits = TARGETS.get((wl, backend), {})
            cells = [(cell_ratio(phases, col, metric), limits.get(col)) for col, _ in COLUMNS]
            rows.append((wl, backend, cells))
    return rows


def markdown(result: dict[str, Any]) -> str:
    summary = result["summary"]
    loads = [m["loadavg"] for m in result["measurements"]]
    lines = [
        f"Load average during the run: {min(loads, default=0):.1f}-{max(loads, default=0):.1f}"
        f" on {result['machine'].get('nproc')} CPUs; page cache dropped before every"
        f" command: {result.get('cold_cache')}.",
        "",
    ]
    for metric, title in (("wall_s", "wall time"), ("cpu_s", "CPU time (user + sys)")):
        lines += ratio_table(result, metric, title)
    return "\n".join(lines + medians_table(summary))


def ratio_table(result: dict[str, Any], metric: str, title: str) -> list[str]:
    lines = [
        f"### Ratios bbackup / restic: {title}; peak RSS: largest over the phases",
        "",
        "Each cell: ratio of the medians of " + str(result["config"].get("repeat")) + " alternating"
        " repeats, then the target in brackets (**bold**: met).",
        "",
        "| workload | backend | " + " | ".join(label for _, label in COLUMNS) + " |",
        "|---|---|" + "---|" * len(COLUMNS),
    ]
    for wl, backend, cells in ratio_rows(result["summary"], metric):
        texts = []
        for value, limit in cells:
            if value is None:
                texts.append("-")
                continue
            text = _f(value)
            if limit is not None:
                text = (f"**{text}**" if value <= limit else text) + f" (≤ {limit})"
            texts.append(text)
        lines.append(f"| {wl} | {backend} | " + " | ".join(texts) + " |")
    return [*lines, ""]


def medians_table(summary: dict[str, Any]) -> list[str]:
    lines = ["### Medians per tool", ""]
    head = "| workload | backend | phase | tool | wall s | CPU s | peak RSS MiB | stored MiB |"
    head += " PUT/GET/HEAD/LIST | all wall s |"
    lines += [head, "|" + "---|" * (head.count("|") - 1)]
    for wl, backends in summary.items():
        for backend, phases in backends.items():
            for phase, row in phases.items():
                for tool in ("bbackup", "restic", "rclone"):
                    t = row.get(tool)
                    if not t:
                        continue
                    if "wall_s" not in t:
                        lines.append(f"| {wl} | {backend} | {phase} | {tool} | failed |||||")
                        continue
                    req = "/".join(str(int(t[k])) for k in ("PUT", "GET", "HEAD", "LIST"))
                    stored = t["repo_bytes"] / MiB if t["repo_bytes"] else None
                    lines.append(
                        f"| {wl} | {backend} | {phase} | {tool} | {_f(t['wall_s'])} "
                        f"| {_f(t['cpu_s'])} | {_f(t['max_rss_mib'], 1)} "
                        f"| {_f(stored, 1)} | {req if backend == 's3' else '-'} "
                        f"| {' '.join(map(str, t['wall_all']))} |"
                    )
    return [*lines, ""]


def write_svg(result: dict[str, Any], path: Path) -> None:
    """Horizontal bars of the ratios, a line at 1.0 and a tick at each target."""
    bars = []
    for wl, backend, cells in ratio_rows(result["summary"]):
        for (value, limit), (_, label) in zip(cells, COLUMNS, strict=True):
            if value is not None:
                bars.append((f"{wl} {backend}: {label}", value, limit))
    left, width, row_h, top = 330, 420, 22, 40
    scale = width / max([2.0, *(v for _, v, _ in bars)])
    height = top + row_h * len(bars) + 40
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 60}" '
        f'height="{height}" font-family="sans-serif" font-size="12">',
        '<text x="10" y="22" font-size="14">bbackup / restic 0.18 (lower is better; '
        "black tick: target; green: met)</text>",
    ]
    for i, (label, value, limit) in enumerate(bars):
        y = top + i * row_h
        ok = limit is None or value <= limit
        color = "#2ca02c" if ok and limit is not None else ("#1f77b4" if ok else "#d62728")
        out.append(f'<text x="{left - 6}" y="{y + 14}" text-anchor="end">{escape(label)}</text>')
        out.append(
            f'<rect x="{left}" y="{y + 3}" width="{value * scale:.1f}" height="{row_h - 6}" '
            f'fill="{color}"/>'
        )
        out.append(f'<text x="{left + value * scale + 4:.1f}" y="{y + 14}">{value:.2f}</text>')
        if limit is not None:
            x = left + limit * scale
            out.append(
                f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y + 1}" y2="{y + row_h - 1}" '
                'stroke="black" stroke-width="2"/>'
            )
    x1 = left + scale
    out.append(
        f'<line x1="{x1:.1f}" x2="{x1:.1f}" y1="{top}" y2="{height - 30}" stroke="grey" '
        'stroke-dasharray="4 3"/>'
    )
    out.append(f'<text x="{x1:.1f}" y="{height - 14}" text-anchor="middle">1.0</text>')
    out.append("</svg>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(out) + "\n")


_LOG_LINE = re.compile(
    r"\[(?P<workload>\S+) (?P<backend>\S+) r(?P<repeat>\d+)\] (?P<tool>\S+)\s+(?P<phase>\S+)"
    r"\s+(?P<wall>[\d.]+) s\s+cpu\s+(?P<cpu>[\d.]+) s\s+rss\s+(?P<rss>[\d.]+) MiB"
    r"(?:\s+req PUT=(?P<PUT>\d+) GET=(?P<GET>\d+) HEAD=(?P<HEAD>\d+) LIST=(?P<LIST>\d+))?"
    r"\s+load (?P<load>[\d.]+)(?P<rest>.*)"
)


def from_log(text: str) -> list[dict[str, Any]]:
    """Measurements from bench_real.py's console log, for a run stopped before it wrote
    its JSON (no stored size and no restore verification: the log does not carry them)."""
    out = []
    for line in text.splitlines():
        m = _LOG_LINE.search(line)
        if not m:
            continue
        g = m.groupdict()
        out.append(
            {
                "workload": g["workload"],
                "backend": g["backend"],
                "repeat": int(g["repeat"]),
                "tool": g["tool"],
                "phase": g["phase"],
                "exit_code": 1 if "EXIT" in g["rest"] else 0,
                "wall_s": float(g["wall"]),
                "cpu_s": float(g["cpu"]),
                "max_rss_mib": float(g["rss"]),
                "repo_bytes": 0,
                "requests": {k: int(g[k]) for k in ("PUT", "GET", "HEAD", "LIST") if g[k]},
                "loadavg": float(g["load"]),
            }
        )
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description="Redraw the tables (.md) and chart (.svg) of a bench_real.py JSON file."
    )
    parser.add_argument("json", type=Path, help="bench_real.py's JSON (written, with --from-log)")
    parser.add_argument(
        "--from-log", type=Path, help="rebuild the JSON from the console log of a stopped run"
    )
    args = parser.parse_args(argv)
    path: Path = args.json
    if args.from_log is not None:
        text = args.from_log.read_text()
        measurements = from_log(text)
        config = {"repeat": max((m["repeat"] for m in measurements), default=0) + 1}
        machine = {"nproc": 2, "source": f"parsed from {args.from_log}"}
        result = {
            "machine": machine,
            "config": config,
            "cold_cache": "cannot drop the page cache" not in text,
            "measurements": measurements,
        }
        path.write_text(json.dumps(result, indent=2))
    if not path.is_file():
        parser.error(f"{path}: no such file")
    result = json.loads(path.read_text())
    result["summary"] = summarise(result["measurements"])
    path.with_suffix(".md").write_text(markdown(result))
    write_svg(result, path.with_suffix(".svg"))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
