"""Estimates from the price table: what reading a set of packs costs and how long it takes
(`estimate_thaw`: retrieval, restore requests, restored copies, download, early-deletion
exposure, wait per tier), and what a repository costs a month (`monthly_cost`). Pure
arithmetic over object sizes, classes and request counts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bbackup.ops.pricing import DAY, GB, RESTORE_TIERS, ClassPrice, PriceTable, tier_offered


@dataclass(frozen=True, slots=True)
class ArchivedObject:
    """One object a read needs, as the listing and a HEAD describe it."""

    name: str
    size: int
    storage_class: str
    #: Seconds since the object was stored (for the early-deletion exposure).
    age_seconds: float = 0.0
    #: None: needs a restore request; "ongoing": requested, not ready; "restored": readable.
    restore_state: str | None = None


@dataclass(slots=True)
class ClassEstimate:
    """The part of an estimate for one storage class."""

    storage_class: str
    objects: int = 0
    bytes: int = 0
    #: Of those: objects that need a restore request, and those already requested or ready.
    to_request: int = 0
    bytes_to_request: int = 0
    in_progress: int = 0
    restored: int = 0
    retrieval_usd: float = 0.0
    request_usd: float = 0.0
    #: The temporary restored copy is billed at the STANDARD rate for its days.
    temporary_copy_usd: float = 0.0
    #: What deleting these objects now would add (their class's minimum duration unmet).
    early_deletion_usd: float = 0.0
    #: Hours until readable with the chosen tier: (fastest, slowest); None: read directly.
    wait_hours: tuple[float, float] | None = None


@dataclass(slots=True)
class ThawEstimate:
    """What reading a set of objects costs and how long it takes, before anything is asked."""

    tier: str
    days: int
    prices_source: str
    prices_taken: str
    classes: list[ClassEstimate] = field(default_factory=list)
    #: Every offered tier: its total cost and slowest wait, for comparison.
    tiers: dict[str, dict[str, float]] = field(default_factory=dict)
    transfer_usd: float = 0.0

    @property
    def thaw_usd(self) -> float:
        """Retrieval, restore requests and the temporary copies: what thawing itself costs."""
        return round(
            sum(c.retrieval_usd + c.request_usd + c.temporary_copy_usd for c in self.classes), 6
        )

    @property
    def objects_to_request(self) -> int:
        return sum(c.to_request for c in self.classes)

    @property
    def wait_hours(self) -> tuple[float, float] | None:
        waits = [c.wait_hours for c in self.classes if c.wait_hours is not None and c.to_request]
        if not waits:
            return None
        return max(w[0] for w in waits), max(w[1] for w in waits)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tier": self.tier,
            "days": self.days,
            "prices": {"source": self.prices_source, "taken": self.prices_taken},
            "classes": [
                {
                    "storage_class": c.storage_class,
                    "objects": c.objects,
                    "bytes": c.bytes,
                    "to_request": c.to_request,
                    "bytes_to_request": c.bytes_to_request,
                    "in_progress": c.in_progress,
                    "restored": c.restored,
                    "retrieval_usd": round(c.retrieval_usd, 6),
                    "request_usd": round(c.request_usd, 6),
                    "temporary_copy_usd": round(c.temporary_copy_usd, 6),
                    "early_deletion_usd": round(c.early_deletion_usd, 6),
                    "wait_hours": list(c.wait_hours) if c.wait_hours else None,
                }
                for c in self.classes
            ],
            "objects_to_request": self.objects_to_request,
            "thaw_usd": self.thaw_usd,
            "transfer_usd": round(self.transfer_usd, 6),
            "early_deletion_usd": round(sum(c.early_deletion_usd for c in self.classes), 6),
            "wait_hours": list(self.wait_hours) if self.wait_hours else None,
            "tiers": self.tiers,
        }


def estimate_thaw(
    objects: Iterable[ArchivedObject],
    prices: PriceTable,
    *,
    tier: str,
    days: int,
    archive_classes: Iterable[str],
) -> ThawEstimate:
    """The cost and wait of reading `objects` with restore requests at `tier` for the
    objects in `archive_classes` that are not requested yet (those already requested or
    restored cost nothing more), and direct reads for the rest."""
    archive = frozenset(archive_classes)
    objects = list(objects)
    estimate = ThawEstimate(tier, days, prices.source, prices.taken)
    by_class: dict[str, ClassEstimate] = {}
    standard = prices.of("STANDARD")
    for obj in objects:
        row = by_class.get(obj.storage_class)
        if row is None:
            row = by_class[obj.storage_class] = ClassEstimate(obj.storage_class)
        price = prices.of(obj.storage_class)
        row.objects += 1
        row.bytes += obj.size
        row.early_deletion_usd += early_deletion_usd(price, obj.size, obj.age_seconds)
        if obj.storage_class not in archive:
            row.retrieval_usd += obj.size / GB * price.retrieval_per_gb
            row.request_usd += price.get_per_1000 / 1000
            continue
        if obj.restore_state == "ongoing":
            row.in_progress += 1
        elif obj.restore_state == "restored":
            row.restored += 1
        else:
            row.to_request += 1
            row.bytes_to_request += obj.size
            tier_price = prices.restore.get(obj.storage_class, {}).get(tier)
            if tier_price is not None:
                row.retrieval_usd += obj.size / GB * tier_price.per_gb
                row.request_usd += tier_price.per_1000_requests / 1000
                row.temporary_copy_usd += obj.size / GB * standard.storage_gb_month * days / 30
                row.wait_hours = tier_price.hours
        row.request_usd += price.get_per_1000 / 1000  # the GET once it is readable
    estimate.classes = sorted(by_class.values(), key=lambda c: c.storage_class)
    estimate.transfer_usd = sum(o.size for o in objects) / GB * prices.transfer_out_per_gb
    for name in RESTORE_TIERS:
        pending = [o for o in objects if o.storage_class in archive and o.restore_state is None]
        if not pending or not all(tier_offered(prices, o.storage_class, name) for o in pending):
            continue
        cost = 0.0
        for o in pending:
            tier_price = prices.restore[o.storage_class][name]
            cost += o.size / GB * (tier_price.per_gb + standard.storage_gb_month * days / 30)
            cost += tier_price.per_1000_requests / 1000
        slowest = max(prices.restore[o.storage_class][name].hours[1] for o in pending)
        estimate.tiers[name] = {"thaw_usd": round(cost, 6), "slowest_hours": slowest}
    return estimate


def early_deletion_usd(price: ClassPrice, size: int, age_seconds: float) -> float:
    """What deleting an object of `size` bytes and `age_seconds` now would be billed for the
    rest of its class's minimum storage duration."""
    remaining_days = price.min_days - age_seconds / DAY
    if remaining_days <= 0:
        return 0.0
    return size / GB * price.storage_gb_month * remaining_days / 30


# ---- what a repository costs a month ---------------------------------------------------


@dataclass(slots=True)
class MonthlyCost:
    """An estimated monthly bill: storage per class, plus one backup's requests."""

    storage_usd: dict[str, float] = field(default_factory=dict)
    #: The last backup's requests by kind and what they cost once.
    backup_requests: dict[str, int] = field(default_factory=dict)
    backup_requests_usd: float = 0.0
    #: How many backups a month the request cost is multiplied by.
    backups_per_month: int = 30

    @property
    def total_usd(self) -> float:
        return round(
            sum(self.storage_usd.values()) + self.backup_requests_usd * self.backups_per_month, 6
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "storage_usd": {k: round(v, 6) for k, v in sorted(self.storage_usd.items())},
            "backup_requests": dict(self.backup_requests),
            "backup_requests_usd": round(self.backup_requests_usd, 6),
            "backups_per_month": self.backups_per_month,
            "total_usd": self.total_usd,
        }


def monthly_cost(
    bytes_per_class: Mapping[str, int],
    prices: PriceTable,
    *,
    backup_requests: Mapping[str, int] | None = None,
    data_storage_class: str | None = None,
    data_puts: int = 0,
    backups_per_month: int = 30,
) -> MonthlyCost:
    """Storage per class at its monthly rate, plus the requests of one backup (its data
    pack PUTs at `data_storage_class`'s rate, every other request at STANDARD's) times
    `backups_per_month`."""
    cost = MonthlyCost(backups_per_month=backups_per_month)
    for name, size in bytes_per_class.items():
        cost.storage_usd[name] = size / GB * prices.of(name).storage_gb_month
    requests = dict(backup_requests or {})
    cost.backup_requests = requests
    standard = prices.of("STANDARD")
    data_price = prices.of(data_storage_class or "STANDARD")
    data_puts = min(data_puts, requests.get("PUT", 0))
    usd = data_puts * data_price.put_per_1000 / 1000
    usd += (
        (requests.get("PUT", 0) - data_puts + requests.get("LIST", 0))
        * standard.put_per_1000
        / 1000
    )
    usd += (requests.get("GET", 0) + requests.get("HEAD", 0)) * standard.get_per_1000 / 1000
    cost.backup_requests_usd = usd
    return cost
