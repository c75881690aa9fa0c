"""`bbackup --help` lists the commands without loading them (`cli.app.CommandIndex`): what
it lists must be what the commands themselves say, at any terminal width, and a fresh
process answering it must not import any command module."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from bbackup import __version__
from bbackup.cli.app import COMMAND_MODULES, COMMAND_SUMMARIES, build_app


@pytest.mark.parametrize("columns", ["50", "80", "200"])
@pytest.mark.parametrize("argv", [["--help"], []])
def test_the_command_index_shows_what_the_loaded_commands_show(
    argv: list[str], columns: str
) -> None:
    def shown(*, index_only: bool) -> tuple[int, str]:
        result = CliRunner().invoke(
            build_app(index_only=index_only), argv, env={"COLUMNS": columns}
        )
        return result.exit_code, result.output

    assert list(COMMAND_SUMMARIES) == list(COMMAND_MODULES)
    assert shown(index_only=True) == shown(index_only=False)


def test_help_and_version_load_no_command_module() -> None:
    probe = (
        "import sys\n"
        "from bbackup.cli.app import main\n"
        "for argv in (['--help'], ['--version'], []):\n"
        "    sys.argv = ['bbackup', *argv]\n"
        "    try:\n        main()\n    except SystemExit:\n        pass\n"
        "print(' '.join(sorted(m for m in sys.modules if m.startswith('bbackup.'))))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    loaded = set(result.stdout.splitlines()[-1].split())
    commands = {f"bbackup.cli.{m}" for m in COMMAND_MODULES.values()} - {
        "bbackup.cli.completion_cmd"  # the bare command asks it whether the shell is completing
    }
    assert f"bbackup {__version__}" in result.stdout
    assert loaded & commands == set()
    assert not any(m.startswith(("bbackup.repository", "bbackup.ops")) for m in loaded)
