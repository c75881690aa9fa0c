"""docs/providers.md shows the provider table in code (`bbackup.storage.providers`) as it
is: the table between its markers is exactly what this test renders from the code."""

from __future__ import annotations

from pathlib import Path

from bbackup.storage import PROVIDERS, Provider

DOC = Path(__file__).resolve().parents[3] / "docs" / "providers.md"
BEGIN = "<!-- capability table: rendered from src/bbackup/storage/providers.py -->"
END = "<!-- end of capability table -->"
COLUMNS = ("aws", "minio", "b2", "r2", "wasabi", "gcs")


def _yes(value: bool) -> str:
    return "yes" if value else "**no**"


def _classes(provider: Provider) -> str:
    return ", ".join(f"`{c}`" for c in provider.storage_classes) or "one class only"


def _transitions(provider: Provider) -> str:
    if not provider.lifecycle_transitions:
        return "**no**"
    if provider.transition_classes is None:
        return "to tiers added with `mc ilm tier add`"
    return ", ".join(f"`{c}`" for c in provider.transition_classes)


def _hosts(provider: Provider) -> str:
    hosts = ", ".join(f"`{h}`" for h in provider.hosts)
    if provider.name == "aws":
        return f"no endpoint, or {hosts}"
    return hosts or f"none: `--s3-provider {provider.name}`"


def _minimum(provider: Provider) -> str:
    return ", ".join(f"{c} {d}" for c, d in provider.minimum_days.items()) or "none"


ROWS = (
    ("Endpoint host (or a subdomain of it)", _hosts),
    ("Storage classes (`backup --storage-class`)", _classes),
    ("S3 lifecycle API (`bbackup lifecycle`)", lambda p: _yes(p.lifecycle_api)),
    ("Lifecycle transitions of `data/`", _transitions),
    ("Rule: abort unfinished multipart uploads", lambda p: _yes(p.lifecycle_abort_multipart)),
    ("Rule: expire noncurrent versions", lambda p: _yes(p.lifecycle_noncurrent)),
    ("Restore requests before reading archived packs", lambda p: _yes(p.restore_requests)),
    ("S3 Object Lock", lambda p: _yes(p.object_lock)),
    ("Minimum billed days per class", _minimum),
)


def render_table() -> str:
    providers = [PROVIDERS[name] for name in COLUMNS]
    lines = [
        "| | " + " | ".join(p.label.split(" (")[0] for p in providers) + " |",
        "|---" * (len(providers) + 1) + "|",
    ]
    for title, cell in ROWS:
        lines.append(f"| {title} | " + " | ".join(cell(p) for p in providers) + " |")
    return "\n".join(lines)


def test_the_doc_shows_the_provider_table_in_code() -> None:
    text = DOC.read_text()
    assert BEGIN in text and END in text, f"markers missing from {DOC}"
    shown = text.split(BEGIN, 1)[1].split(END, 1)[0].strip()

    assert shown == render_table(), "docs/providers.md: paste this table:\n" + render_table()


def test_every_provider_is_a_column() -> None:
    assert set(COLUMNS) == set(PROVIDERS) - {"s3"}
