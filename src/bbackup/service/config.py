"""The job configuration file (`$XDG_CONFIG_HOME/bbackup/config.toml` or `--config`):
found, read with tomllib and checked by `config_reader`, so that every problem is
reported as `FILE:LINE: KEY: what is wrong`. The settings it yields are in `settings`."""

from __future__ import annotations

import os
import re
import stat
import tomllib
from pathlib import Path

from bbackup.errors import UsageError
from bbackup.service.config_reader import ConfigReader
from bbackup.service.settings import (
    NOTIFY_EVENTS,
    NOTIFY_STYLES,
    DrillSettings,
    HookSettings,
    JobSettings,
    NotifySettings,
    RepositorySettings,
    ServiceConfig,
)

__all__ = [
    "NOTIFY_EVENTS",
    "NOTIFY_STYLES",
    "ConfigError",
    "DrillSettings",
    "HookSettings",
    "JobSettings",
    "NotifySettings",
    "RepositorySettings",
    "ServiceConfig",
    "default_config_path",
    "load_config",
    "parse_config",
]


class ConfigError(UsageError):
    """The configuration file is invalid."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        more = len(problems) - 1
        suffix = f" (and {more} more: run `bbackup config check`)" if more else ""
        super().__init__(problems[0] + suffix)


def default_config_path() -> Path:
    """$XDG_CONFIG_HOME/bbackup/config.toml, else ~/.config/bbackup/config.toml."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "bbackup" / "config.toml"


def load_config(path: Path | None = None) -> ServiceConfig:
    """Read and check the config file; ConfigError listing every problem otherwise."""
    path = path or default_config_path()
    try:
        with open(path, "rb") as f:
            _refuse_if_others_can_write(path, os.fstat(f.fileno()))
            raw = f.read()
    except FileNotFoundError:
        raise UsageError(
            f"no config file at {path}: create one (see docs/automation.md) or pass --config"
        ) from None
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    try:
        # TOML is UTF-8 by definition, whatever the locale says.
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError([f"{path}:{line}: not valid TOML: not UTF-8 text"]) from None
    return parse_config(text, path)


def _refuse_if_others_can_write(path: Path, info: os.stat_result) -> None:
    """The config's hooks and password commands run as whoever runs the jobs (often root):
    like ssh with its config, refuse a file another user could have written."""
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH) or info.st_uid not in (os.geteuid(), 0):
        raise UsageError(
            f"{path} can be written by other users, and its hooks and password commands "
            f"would run as this user: make it yours and `chmod go-w {path}`"
        )


def parse_config(text: str, path: Path) -> ServiceConfig:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message ends with "(at line N, column M)".
        m = re.search(r"\(at line (\d+), column \d+\)", str(exc))
        where = f"{path}:{m.group(1)}" if m else str(path)
        reason = re.sub(r"\s*\(at line.*\)$", "", str(exc))
        raise ConfigError([f"{where}: not valid TOML: {reason}"]) from None
    reader = ConfigReader(text, path)
    config = reader.config(data)
    if reader.problems:
        raise ConfigError(reader.problems)
    return config
