"""The one password source resolver: a password file, a password command, BBACKUP_PASSWORD,
then a prompt on a terminal; without any of them, a clear error, never a hang.

The entry point (`cli/early.py`) imports this module before anything else, to read the
password the same way for the early key derivation: it imports nothing heavy at the top
(subprocess alone costs ~30 ms of start-up, typing ~10 ms), only where a source needs it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

from bbackup.errors import NoPasswordSource, UsageError


def read_password_file(path: str) -> str:
    """The password in a password file: its text without the trailing line break."""
    with open(path) as f:
        return f.read().rstrip("\r\n")


def password_without_asking(
    password_file: str | None,
    environ: Mapping[str, str],
    variable: str = "BBACKUP_PASSWORD",
    password_command: str | None = None,
) -> str | None:
    """The password from `password_file`, else (without a password command) from the
    variable `variable` (BBACKUP_PASSWORD; `copy`'s source: BBACKUP_FROM_PASSWORD); None if
    neither applies (a password command or a prompt comes next). OSError if the file is
    unreadable.

    An explicit source beats the environment, as in restic: a job's or a flag's password
    file or command is used even when BBACKUP_PASSWORD is set for another repository."""
    if password_file:
        return read_password_file(password_file)
    if password_command:
        return None
    return environ.get(variable)


def resolve_password(
    password_file: str | None,
    password_command: str | None,
    *,
    confirm: bool = False,
    prompt: str = "Password",
    variable: str = "BBACKUP_PASSWORD",
) -> str:
    """The password of a repository command: a password file, a password command, the
    environment variable `variable`, then a TTY prompt."""
    try:
        value = password_without_asking(password_file, os.environ, variable, password_command)
    except OSError as exc:
        raise UsageError(f"cannot read password file {password_file}: {exc.strerror}") from exc
    if value == "" and password_file:
        raise NoPasswordSource(f"password file {password_file} is empty")
    if value is not None:
        return value
    if password_command:
        import subprocess

        try:
            out = subprocess.run(
                password_command,
                shell=True,
                check=True,
                capture_output=True,
                text=True,
                timeout=60,
            )
        except (subprocess.SubprocessError, OSError) as exc:
            raise UsageError(f"password command failed: {exc}") from exc
        return out.stdout.rstrip("\r\n")
    return prompt_password(prompt, confirm=confirm)


def resolve_new_password(password_file: str | None) -> str:
    """A new password (`key add`, `key passwd`): from `password_file`, else
    BBACKUP_NEW_PASSWORD, else asked twice on a terminal; never empty."""
    if password_file:
        try:
            value = read_password_file(password_file)
        except OSError as exc:
            raise UsageError(
                f"cannot read new password file {password_file}: {exc.strerror}"
            ) from exc
    elif (env := os.environ.get("BBACKUP_NEW_PASSWORD")) is not None:
        value = env
    else:
        value = prompt_password("New password", confirm=True)
    if not value:
        raise UsageError("an empty password is not allowed")
    return value


def prompt_password(prompt: str, *, confirm: bool) -> str:
    import getpass

    if not sys.stdin.isatty():
        raise NoPasswordSource()
    first = getpass.getpass(f"{prompt}: ")
    if confirm:
        if getpass.getpass(f"{prompt} again: ") != first:
            raise UsageError("passwords do not match")
        if not first:
            raise UsageError("an empty password is not allowed")
    return first
