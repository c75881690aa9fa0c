"""The price table and the estimates made from it: a mixed read (instant and archive
classes, some restores already under way), the tiers offered per class, a TOML override
and its errors, and a monthly bill, each against a hand calculation."""

from __future__ import annotations

import tomllib

import pytest

from bbackup.errors import UsageError
from bbackup.ops.cost_estimates import ArchivedObject, estimate_thaw, monthly_cost
from bbackup.ops.pricing import DEFAULT_PRICES, price_table_from_toml, tier_offered
from bbackup.storage import ARCHIVE_CLASSES

GIB = 2**30
DAY = 86400


def test_estimate_of_a_mixed_read_matches_the_hand_calculation() -> None:
    objects = [
        ArchivedObject("data/aa/1", 2 * GIB, "GLACIER", age_seconds=30 * DAY),
        ArchivedObject("data/aa/2", GIB, "GLACIER", age_seconds=100 * DAY, restore_state="ongoing"),
        ArchivedObject("data/bb/3", 4 * GIB, "DEEP_ARCHIVE", age_seconds=0),
        ArchivedObject("data/cc/4", GIB, "GLACIER_IR", age_seconds=10 * DAY),
        ArchivedObject("data/dd/5", GIB, "STANDARD"),
    ]

    estimate = estimate_thaw(
        objects, DEFAULT_PRICES, tier="standard", days=6, archive_classes=ARCHIVE_CLASSES
    )

    rows = {c.storage_class: c for c in estimate.classes}
    glacier, deep, instant = rows["GLACIER"], rows["DEEP_ARCHIVE"], rows["GLACIER_IR"]
    assert (glacier.objects, glacier.to_request, glacier.in_progress) == (2, 1, 1)
    assert glacier.bytes_to_request == 2 * GIB
    # Only the pack without a restore under way is requested and paid for.
    assert glacier.retrieval_usd == pytest.approx(2 * 0.01)
    assert glacier.request_usd == pytest.approx(0.05 / 1000 + 2 * 0.0004 / 1000)
    assert glacier.temporary_copy_usd == pytest.approx(2 * 0.023 * 6 / 30)
    # 60 of GLACIER's 90 days left on the first pack; the second is past them.
    assert glacier.early_deletion_usd == pytest.approx(2 * 0.0036 * 60 / 30)
    assert deep.retrieval_usd == pytest.approx(4 * 0.02)
    assert deep.early_deletion_usd == pytest.approx(4 * 0.00099 * 180 / 30)
    assert deep.wait_hours == (0.0, 12.0)
    assert instant.to_request == 0 and instant.wait_hours is None
    assert instant.retrieval_usd == pytest.approx(0.03)
    assert instant.early_deletion_usd == pytest.approx(0.004 * 80 / 30)
    assert rows["STANDARD"].retrieval_usd == 0
    assert estimate.transfer_usd == pytest.approx(9 * 0.09)
    assert estimate.objects_to_request == 2
    assert estimate.wait_hours == (3.0, 12.0)
    # DEEP_ARCHIVE has no expedited tier, so it is not offered for this read.
    assert set(estimate.tiers) == {"standard", "bulk"}
    bulk = 4 * 0.0025 + 0.025 / 1000 + 6 * 0.023 * 6 / 30
    assert estimate.tiers["bulk"]["thaw_usd"] == pytest.approx(bulk, abs=1e-6)
    assert estimate.tiers["bulk"]["slowest_hours"] == 48.0


def test_tiers_offered_per_class() -> None:
    assert tier_offered(DEFAULT_PRICES, "GLACIER", "expedited")
    assert not tier_offered(DEFAULT_PRICES, "DEEP_ARCHIVE", "expedited")
    assert tier_offered(DEFAULT_PRICES, "DEEP_ARCHIVE", "bulk")


def test_a_toml_table_overrides_only_what_it_names() -> None:
    document = tomllib.loads(
        """
        [prices]
        source = "Wasabi"
        taken = "2026-11-01"
        transfer_out_per_gb = 0
        [prices.class.STANDARD]
        storage_gb_month = 0.0068
        min_days = 90
        [prices.restore.DEEP_ARCHIVE.expedited]
        per_gb = 0.1
        per_1000_requests = 20
        hours = [0.5, 2]
        """
    )

    table = price_table_from_toml(document)

    assert (table.source, table.taken, table.transfer_out_per_gb) == ("Wasabi", "2026-11-01", 0)
    assert table.of("STANDARD").storage_gb_month == 0.0068
    assert table.of("STANDARD").min_days == 90
    assert table.of("STANDARD").put_per_1000 == 0.005  # not named: the default stays
    assert table.of("GLACIER") == DEFAULT_PRICES.of("GLACIER")
    assert table.restore["DEEP_ARCHIVE"]["expedited"].hours == (0.5, 2.0)
    assert tier_offered(table, "DEEP_ARCHIVE", "expedited")
    assert table.of("NEARLINE") == table.of("STANDARD")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[prices]\ncurrency = 'EUR'", "unknown key 'currency'"),
        ("[prices.class.GLACIER]\nstorage = 1", "class.GLACIER: unknown key 'storage'"),
        ("[prices.class.GLACIER]\nstorage_gb_month = -1", "must be a number of 0 or more"),
        ("[prices.class.GLACIER]\nstorage_gb_month = true", "must be a number"),
        ("[prices.restore.GLACIER.slow]\nper_gb = 1", "tier must be one of"),
        ("[prices.restore.GLACIER.bulk]\nhours = 5", "hours must be [fastest, slowest]"),
        ("[prices]\nclass = 3", "class must be a table"),
    ],
)
def test_a_bad_price_table_is_a_usage_error_naming_the_key(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message.replace("[", r"\[").replace("]", r"\]")):
        price_table_from_toml(tomllib.loads(text))


def test_monthly_cost_prices_storage_per_class_and_the_last_backup_requests() -> None:
    cost = monthly_cost(
        {"STANDARD": GIB, "GLACIER": 100 * GIB},
        DEFAULT_PRICES,
        backup_requests={"PUT": 12, "GET": 3, "HEAD": 1, "LIST": 4, "DELETE": 1},
        data_storage_class="GLACIER",
        data_puts=10,
        backups_per_month=30,
    )

    assert cost.storage_usd == pytest.approx({"STANDARD": 0.023, "GLACIER": 0.36})
    once = 10 * 0.03 / 1000 + (2 + 4) * 0.005 / 1000 + 4 * 0.0004 / 1000
    assert cost.backup_requests_usd == pytest.approx(once)
    assert cost.total_usd == pytest.approx(0.023 + 0.36 + 30 * once, abs=1e-6)
