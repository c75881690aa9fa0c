"""Where the price table comes from: AWS us-east-1 defaults in `ops.pricing`, overridden by
a TOML file (`BBACKUP_PRICES_FILE`, else `$XDG_CONFIG_HOME/bbackup/prices.toml`) with a
`[prices]` table. docs/tiering.md shows the format."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from bbackup.errors import UsageError
from bbackup.ops.pricing import DEFAULT_PRICES, PriceTable, price_table_from_toml


def prices_path() -> Path:
    """The price file bbackup reads if it exists."""
    explicit = os.environ.get("BBACKUP_PRICES_FILE", "").strip()
    if explicit:
        return Path(explicit).expanduser()
    config = os.environ.get("XDG_CONFIG_HOME", "").strip() or os.path.expanduser("~/.config")
    return Path(config) / "bbackup" / "prices.toml"


def load_prices() -> PriceTable:
    """The default prices with the price file's overrides; a missing default file is not an
    error, a missing BBACKUP_PRICES_FILE is."""
    path = prices_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if os.environ.get("BBACKUP_PRICES_FILE", "").strip():
            raise UsageError(f"BBACKUP_PRICES_FILE: {path} does not exist") from None
        return DEFAULT_PRICES
    except OSError as exc:
        raise UsageError(f"cannot read the price file {path}: {exc.strerror}") from exc
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"price file {path}: {exc}") from exc
    try:
        return price_table_from_toml(document)
    except UsageError as exc:
        raise UsageError(f"price file {path}: {exc.message}") from exc
