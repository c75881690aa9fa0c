"""The price table: what each storage class and each archive restore tier costs, AWS
us-east-1 list prices by default (with the date they were taken), and a user's TOML table
that overrides any part of it (`price_table_from_toml`). Pure data; `cost_estimates` does
the arithmetic, docs/tiering.md explains both.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from bbackup.errors import UsageError

#: AWS bills storage and transfer by the binary gigabyte (2**30 bytes), calling it "GB".
GB = float(2**30)
DAY = 86400.0
#: The three ways S3 restores an archived object, fastest first.
RESTORE_TIERS = ("expedited", "standard", "bulk")


@dataclass(frozen=True, slots=True)
class ClassPrice:
    """What one storage class costs (USD)."""

    storage_gb_month: float
    put_per_1000: float
    get_per_1000: float
    #: Charged per GB read from an instant-access infrequent class (IA, Glacier IR).
    retrieval_per_gb: float = 0.0
    #: Deleting (or transitioning) an object younger than this bills the remaining days.
    min_days: int = 0


@dataclass(frozen=True, slots=True)
class TierPrice:
    """One restore tier of one archive class: its fees and how long it takes."""

    per_gb: float
    per_1000_requests: float
    #: Typical hours from the request until the object is readable: (fastest, slowest).
    hours: tuple[float, float]


@dataclass(frozen=True, slots=True)
class PriceTable:
    """Prices per storage class and per (archive class, restore tier)."""

    source: str
    #: When the prices were taken (ISO date): prices change, estimates say how old theirs are.
    taken: str
    classes: Mapping[str, ClassPrice]
    #: class → tier → price; a tier missing for a class is not offered for it.
    restore: Mapping[str, Mapping[str, TierPrice]]
    #: Data transfer out to the internet, per GB (nothing from inside the same region).
    transfer_out_per_gb: float = 0.0

    def of(self, storage_class: str) -> ClassPrice:
        """The prices of a class; an unknown class is priced as STANDARD."""
        return self.classes.get(storage_class) or self.classes["STANDARD"]


_MINUTE = 1 / 60
#: AWS S3 list prices, us-east-1, first storage tier (aws.amazon.com/s3/pricing).
DEFAULT_PRICES = PriceTable(
    source="AWS S3 list prices, us-east-1 (aws.amazon.com/s3/pricing)",
    taken="2025-01-15",
    classes={
        "STANDARD": ClassPrice(0.023, 0.005, 0.0004),
        "INTELLIGENT_TIERING": ClassPrice(0.023, 0.005, 0.0004),
        "STANDARD_IA": ClassPrice(0.0125, 0.01, 0.001, retrieval_per_gb=0.01, min_days=30),
        "ONEZONE_IA": ClassPrice(0.01, 0.01, 0.001, retrieval_per_gb=0.01, min_days=30),
        "GLACIER_IR": ClassPrice(0.004, 0.02, 0.01, retrieval_per_gb=0.03, min_days=90),
        "GLACIER": ClassPrice(0.0036, 0.03, 0.0004, min_days=90),
        "DEEP_ARCHIVE": ClassPrice(0.00099, 0.05, 0.0004, min_days=180),
    },
    restore={
        "GLACIER": {
            "expedited": TierPrice(0.03, 10.0, (1 * _MINUTE, 5 * _MINUTE)),
            "standard": TierPrice(0.01, 0.05, (3.0, 5.0)),
            "bulk": TierPrice(0.0, 0.0, (5.0, 12.0)),
        },
        "DEEP_ARCHIVE": {
            # AWS promises only an upper bound for DEEP_ARCHIVE ("within 12/48 hours").
            "standard": TierPrice(0.02, 0.10, (0.0, 12.0)),
            "bulk": TierPrice(0.0025, 0.025, (0.0, 48.0)),
        },
    },
    transfer_out_per_gb=0.09,
)


def price_table_from_toml(
    document: Mapping[str, Any], base: PriceTable = DEFAULT_PRICES
) -> PriceTable:
    """`base` with what a parsed TOML document's `[prices]` table overrides.

    ```toml
    [prices]
    source = "our negotiated rates"       # required with any override: say where they
    taken = "2026-11-01"                  # come from and when
    transfer_out_per_gb = 0.05
    [prices.class.GLACIER]                # any of the ClassPrice fields
    storage_gb_month = 0.0036
    [prices.restore.GLACIER.bulk]         # per_gb, per_1000_requests, hours = [5, 12]
    per_gb = 0.0
    ```
    """
    table = document.get("prices", document)
    if not isinstance(table, Mapping):
        raise UsageError("prices: [prices] must be a table")
    known = {"source", "taken", "transfer_out_per_gb", "class", "restore"}
    if unknown := sorted(set(table) - known):
        raise UsageError(f"prices: unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})")
    classes = dict(base.classes)
    for name, fields in _table(table, "class").items():
        current = classes.get(name, base.classes["STANDARD"])
        classes[name] = replace(current, **_fields(f"class.{name}", fields, ClassPrice))
    restore = {name: dict(tiers) for name, tiers in base.restore.items()}
    for name, tiers in _table(table, "restore").items():
        if not isinstance(tiers, Mapping):
            raise UsageError(f"prices: restore.{name} must be a table")
        for tier, fields in tiers.items():
            if tier not in RESTORE_TIERS:
                raise UsageError(
                    f"prices: restore.{name}.{tier}: tier must be one of {RESTORE_TIERS}"
                )
            where = f"restore.{name}.{tier}"
            old = restore.setdefault(name, {}).get(tier, TierPrice(0.0, 0.0, (0.0, 0.0)))
            restore[name][tier] = replace(old, **_fields(where, fields, TierPrice))
    return PriceTable(
        source=str(table.get("source", base.source)),
        taken=str(table.get("taken", base.taken)),
        classes=classes,
        restore=restore,
        transfer_out_per_gb=_number(
            "transfer_out_per_gb", table.get("transfer_out_per_gb", base.transfer_out_per_gb)
        ),
    )


def _table(parent: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = parent.get(key, {})
    if not isinstance(value, Mapping):
        raise UsageError(f"prices: {key} must be a table")
    return value


def _fields(where: str, fields: Any, kind: type[ClassPrice] | type[TierPrice]) -> dict[str, Any]:
    if not isinstance(fields, Mapping):
        raise UsageError(f"prices: {where} must be a table")
    allowed = set(kind.__dataclass_fields__)
    out: dict[str, Any] = {}
    for key, value in fields.items():
        if key not in allowed:
            raise UsageError(
                f"prices: {where}: unknown key {key!r} (known: {', '.join(sorted(allowed))})"
            )
        if key == "hours":
            if not (isinstance(value, list) and len(value) == 2):
                raise UsageError(f"prices: {where}.hours must be [fastest, slowest]")
            out[key] = (_number(f"{where}.hours", value[0]), _number(f"{where}.hours", value[1]))
        elif key == "min_days":
            out[key] = int(_number(f"{where}.min_days", value))
        else:
            out[key] = _number(f"{where}.{key}", value)
    return out


def _number(where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise UsageError(f"prices: {where} must be a number of 0 or more, not {value!r}")
    return float(value)


def tier_offered(prices: PriceTable, storage_class: str, tier: str) -> bool:
    return tier in prices.restore.get(storage_class, {})
