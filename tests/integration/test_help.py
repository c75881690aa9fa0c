"""Help that a user can act on: every option and argument described, typed placeholders
(`PATH`, `SNAPSHOT`, `DURATION`, never `<str>`), choices listed, examples in every
command's help, shell completion, and a README command table that cannot drift from the
real options."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from bbackup.cli.app import build_app

README = Path(__file__).resolve().parents[2] / "README.md"


def commands() -> Iterator[tuple[str, Any]]:
    """(command path such as "key add", click command) for every command."""
    root = typer.main.get_command(build_app())
    pending: list[tuple[str, Any]] = [("", root)]
    while pending:
        prefix, group = pending.pop()
        for name, command in getattr(group, "commands", {}).items():
            path = f"{prefix} {name}".strip()
            if getattr(command, "commands", None):
                pending.append((path, command))
            else:
                yield path, command


ALL = sorted(commands(), key=lambda item: item[0])
IDS = [path for path, _ in ALL]
#: The options every repository command takes (`repo_command`): the README lists them once.
COMMON_OPTIONS = set.intersection(
    *(
        {name for param in command.params for name in [*param.opts, *param.secondary_opts]}
        for _, command in ALL
        if any("--repo" in param.opts for param in command.params)
    )
)


def help_text(path: str) -> str:
    result = CliRunner().invoke(
        build_app(), [*path.split(), "--help"], env={"COLUMNS": "200"}, catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize(("path", "command"), ALL, ids=IDS)
def test_every_option_and_argument_is_described(path: str, command: Any) -> None:
    undescribed = [
        param.opts[0] if param.opts else param.name
        for param in command.params
        if not (getattr(param, "help", None) or "").strip()
    ]
    assert not undescribed, f"bbackup {path}: no help for {undescribed}"
    assert (command.help or "").strip(), f"bbackup {path} has no description"


@pytest.mark.parametrize("path", IDS)
def test_help_shows_typed_placeholders_and_examples(path: str) -> None:
    text = help_text(path)

    untyped = re.findall(r"<[a-z ]+>|\bTEXT\b|\bINTEGER\b|<function>", text)
    assert not untyped, f"bbackup {path} --help shows {untyped}:\n{text}"
    assert "Examples:" in text and f"bbackup {path.split()[0]}" in text.split("Examples:")[1]


def test_placeholders_name_what_a_value_is() -> None:
    backup = help_text("backup")
    assert "PATH..." in backup and "--exclude PATTERN" in backup and "--repo URL" in backup
    assert "--type [incremental|differential|full]" in backup
    assert "{SNAPSHOT}" in help_text("ls") and "--target DIR" in help_text("restore")
    assert "--keep-within DURATION" in help_text("forget")
    assert "--grace DURATION" in help_text("prune")


def test_a_choice_outside_the_list_is_a_usage_error_naming_the_choices(tmp_path: Path) -> None:
    result = CliRunner().invoke(build_app(), ["backup", "--type", "weekly", str(tmp_path)])

    assert result.exit_code == 2
    assert "'incremental', 'differential', 'full'" in result.output


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_prints_a_script_for_the_shell(shell: str) -> None:
    result = CliRunner().invoke(build_app(), ["completion", shell])

    assert result.exit_code == 0, result.output
    assert "_BBACKUP_COMPLETE" in result.stdout and "bbackup" in result.stdout


def test_the_completion_script_gets_commands_and_choices_from_bbackup() -> None:
    def complete(words: str) -> list[str]:
        env = {
            **os.environ,
            "_BBACKUP_COMPLETE": "complete_bash",
            "COMP_WORDS": words,
            "COMP_CWORD": str(len(words.split(" ")) - 1),
        }
        done = subprocess.run(
            [sys.executable, "-m", "bbackup"], env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.split()

    assert complete("bbackup sn") == ["snapshots"]
    assert complete("bbackup backup --type ") == ["incremental", "differential", "full"]
    assert "add" in complete("bbackup key ")


def readme_rows() -> list[str]:
    """The first cell of each row of the README's command table."""
    text = README.read_text()
    table = text.split("## Commands", 1)[1].split("\n## ", 1)[0]
    return [line.split(" | ")[0] for line in table.splitlines() if line.startswith("| `")]


def rows_of(path: str, rows: list[str]) -> list[str]:
    """The README rows that document `path`: its top-level name first, and for a
    sub-command its name as a word in the row."""
    top, _, sub = path.partition(" ")
    mine = [r for r in rows if r.startswith(f"| `{top} ") or r.startswith(f"| `{top}`")]
    if sub:
        mine = [r for r in mine if re.search(rf"\b{re.escape(sub)}\b", r)]
    return mine


@pytest.mark.parametrize(("path", "command"), ALL, ids=IDS)
def test_readme_command_table_lists_every_command_and_option(path: str, command: Any) -> None:
    rows = rows_of(path, readme_rows())
    assert rows, f"README's command table has no row for `bbackup {path}`"
    documented = " ".join(rows)
    missing = [
        name
        for param in command.params
        for name in param.opts  # not the negations (`--no-...`) of a flag
        if name.startswith("--") and name not in COMMON_OPTIONS and name not in documented
    ]
    assert not missing, f"README's row for `bbackup {path}` lacks {missing}"


def test_readme_lists_the_options_every_repository_command_takes() -> None:
    text = README.read_text()
    assert {"--repo", "--json", "--quiet", "--s3-endpoint"} <= COMMON_OPTIONS
    missing = sorted(o for o in COMMON_OPTIONS if o.startswith("--") and o not in text)
    assert not missing, f"README does not mention {missing}"
