"""Start-up: a command registers (and imports) only its own module, finds itself, and
loads none of the operations of other commands."""

from __future__ import annotations

import subprocess
import sys

import pytest
import typer

from bbackup.cli.app import COMMAND_MODULES, build_app

#: The modules of bbackup.ops that carry each command's work, beyond which no command may
#: load another's: a restore that loaded check code would pay for it at every start.
OPERATIONS = {
    "backup": {"bbackup.ops.backup"},
    "restore": {"bbackup.ops.restore"},
    # dump plans its pack reads with restore's planner (ops.restore_reads), not the restorer.
    "dump": {"bbackup.ops.dump"},
    "check": {"bbackup.ops.check"},
    "ls": {"bbackup.ops.listing"},
    # repair packs verifies packs exactly as check --read-data does, with check's code
    # (ops.check_read_data), not the whole check.
    "repair": {"bbackup.ops.repair", "bbackup.ops.repair_snapshots"},
    # forget --prune runs prune, loading its code only when a run asks for it.
    "forget": {"bbackup.ops.forget"},
    "prune": {"bbackup.ops.prune"},
    # locks extend finds the live packs the way prune does (ops.prune_input), not prune.
    "locks": {"bbackup.ops.lock_extension"},
    # copy reads the source's packs with restore's read planning (ops.restore_reads).
    "copy": {"bbackup.ops.copy"},
    "stats": {"bbackup.ops.stats"},
    # drill restores its sample with the restorer.
    "drill": {"bbackup.ops.drill", "bbackup.ops.restore"},
    # A job runs a backup and its retention (prune, when due, is loaded then).
    "run": {"bbackup.ops.backup", "bbackup.ops.forget"},
    "service": {"bbackup.ops.backup", "bbackup.ops.forget"},
    # diff lists what lies below an added or removed directory with ls's walk.
    "diff": {"bbackup.ops.diff", "bbackup.ops.listing"},
    "find": {"bbackup.ops.find"},
    "tag": {"bbackup.ops.tag"},
    # a rewritten snapshot records its original as a retagged one does, with tag's code.
    "rewrite": {"bbackup.ops.rewrite", "bbackup.ops.tag"},
    "cat": {"bbackup.ops.inspect"},
    "list": {"bbackup.ops.inspect"},
    "cache": {"bbackup.ops.local_cache"},
}
ALL_OPERATIONS = set().union(*OPERATIONS.values())


def modules_loaded_by(*argv: str) -> set[str]:
    """The bbackup modules a fresh process has loaded after `bbackup ARGV`."""
    probe = (
        "import sys\n"
        f"sys.argv = ['bbackup', *{list(argv)!r}]\n"
        "from bbackup.cli.app import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(' '.join(sorted(m for m in sys.modules if m.startswith('bbackup.'))))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    return set(result.stdout.splitlines()[-1].split())


def test_every_command_works_when_only_its_own_module_is_registered() -> None:
    full = typer.main.get_command(build_app())
    assert isinstance(full, typer.core.TyperGroup)
    assert list(full.commands) == list(COMMAND_MODULES)  # the order --help lists them in
    for name, command in full.commands.items():
        alone = typer.main.get_command(build_app(name))
        assert isinstance(alone, typer.core.TyperGroup)
        assert name in alone.commands, name
        params = [p.name for p in alone.commands[name].params]
        assert params == [p.name for p in command.params], name


@pytest.mark.parametrize("command", sorted(COMMAND_MODULES))
def test_a_command_loads_its_own_operations_and_no_other_commands(command: str) -> None:
    modules = modules_loaded_by(command, "--help")

    own = f"bbackup.cli.{COMMAND_MODULES[command]}"
    assert own in modules
    others = {f"bbackup.cli.{m}" for m in COMMAND_MODULES.values()} - {own}
    assert modules & others == set(), command
    needed = OPERATIONS.get(command, set())
    assert modules & ALL_OPERATIONS == needed, command
