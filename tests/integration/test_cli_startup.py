"""Start-up: a command registers (and imports) only its own module, and finds itself."""

from __future__ import annotations

import subprocess
import sys

import typer

from bbackup.cli.app import COMMAND_MODULES, build_app


def test_every_command_works_when_only_its_own_module_is_registered() -> None:
    full = typer.main.get_command(build_app())
    assert isinstance(full, typer.core.TyperGroup)
    assert set(full.commands) == set(COMMAND_MODULES)
    for name, command in full.commands.items():
        alone = typer.main.get_command(build_app(name))
        assert isinstance(alone, typer.core.TyperGroup)
        assert name in alone.commands, name
        params = [p.name for p in alone.commands[name].params]
        assert params == [p.name for p in command.params], name


def test_a_backup_does_not_import_what_other_commands_need() -> None:
    probe = (
        "import sys\n"
        "sys.argv = ['bbackup', 'backup', '--help']\n"
        "from bbackup.cli.app import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(' '.join(sorted(m for m in sys.modules if m.startswith('bbackup.'))))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    modules = result.stdout.splitlines()[-1].split()

    assert "bbackup.ops.backup" in modules
    for other in ("bbackup.ops.prune", "bbackup.ops.restore", "bbackup.ops.check"):
        assert other not in modules, other
