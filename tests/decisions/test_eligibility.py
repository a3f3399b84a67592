"""Eligibility rules, table-driven: window boundaries in the policy's zone, final sale, category,
quantity and timeline, each with its reason code and the sentence a person reads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from inspection.decisions.eligibility import check_eligibility, window_deadline
from inspection.decisions.policy import Policy
from inspection.decisions.types import RuleResult
from tests.decisions import factories as f
from tests.decisions.conftest import BUNDLED_POLICY

# Delivered late evening UTC: 23:30 UTC on 1 March is already 2 March in Berlin (UTC+1), so the
# window counts from 2 March. Berlin switches to UTC+2 on 29 March, inside the window.
LATE_DELIVERY = datetime(2026, 3, 1, 23, 30, tzinfo=UTC)


def _rule(result: Any, name: str) -> RuleResult:
    return next(r for r in result.rules if r.rule == name)


WINDOW_CASES = [
    # (category, delivered, requested, passed, message fragment)
    pytest.param(
        "apparel",
        LATE_DELIVERY,
        datetime(2026, 4, 1, 21, 59, 59, tzinfo=UTC),  # 23:59:59 on 1 April in Berlin
        True,
        "returned 30 days after delivery; the apparel window is 30 days",
        id="day-30-last-second-in",
    ),
    pytest.param(
        "apparel",
        LATE_DELIVERY,
        datetime(2026, 4, 1, 22, 0, tzinfo=UTC),  # 00:00 on 2 April in Berlin
        False,
        "returned 31 days after delivery; the apparel window is 30 days",
        id="day-31-first-second-out",
    ),
    pytest.param(
        "apparel",
        LATE_DELIVERY,
        # Counting in UTC would call this day 31 (1 March -> 1 April); in Berlin it is day 30.
        datetime(2026, 4, 1, 10, 0, tzinfo=UTC),
        True,
        "returned 30 days after delivery",
        id="utc-day-31-is-berlin-day-30",
    ),
    pytest.param(
        "apparel",
        LATE_DELIVERY,
        LATE_DELIVERY + timedelta(days=41),
        False,
        "returned 41 days after delivery; the apparel window is 30 days",
        id="41-days",
    ),
    pytest.param(
        "electronics",
        LATE_DELIVERY,
        datetime(2026, 3, 16, 22, 59, tzinfo=UTC),  # 23:59 on 16 March Berlin = day 14
        True,
        "the electronics window is 14 days",
        id="electronics-day-14",
    ),
    pytest.param(
        "electronics",
        LATE_DELIVERY,
        datetime(2026, 3, 16, 23, 0, tzinfo=UTC),  # 00:00 on 17 March Berlin = day 15
        False,
        "returned 15 days after delivery; the electronics window is 14 days",
        id="electronics-day-15",
    ),
    pytest.param(
        "hard_goods",
        LATE_DELIVERY,
        LATE_DELIVERY + timedelta(days=59),
        True,
        "the hard_goods window is 60 days",
        id="hard-goods-60",
    ),
    pytest.param(
        "garden",  # unknown category -> default policy
        LATE_DELIVERY,
        LATE_DELIVERY + timedelta(days=31),
        False,
        "the default window is 30 days",
        id="unknown-category-default",
    ),
    pytest.param(
        "apparel",
        LATE_DELIVERY,
        LATE_DELIVERY - timedelta(hours=3),  # opened before it arrived: day 0
        True,
        "returned 0 days after delivery",
        id="before-delivery",
    ),
]


@pytest.mark.parametrize(("category", "delivered", "requested", "passed", "message"), WINDOW_CASES)
def test_window(
    policy: Policy,
    category: str,
    delivered: datetime,
    requested: datetime,
    passed: bool,
    message: str,
) -> None:
    result = check_eligibility(
        policy=policy,
        line=f.line(
            category=category, ordered_at=delivered - timedelta(days=2), delivered_at=delivered
        ),
        claim=f.claim(requested_at=requested),
    )
    rule = _rule(result, "window")
    assert rule.passed is passed
    assert result.eligible is passed
    assert rule.reason_code == ("within_return_window" if passed else "outside_return_window")
    assert message in rule.message
    if not passed:
        assert "Europe/Berlin" in rule.message


def test_window_end_names_the_last_local_day(policy: Policy) -> None:
    result = check_eligibility(
        policy=policy,
        line=f.line(delivered_at=LATE_DELIVERY),
        claim=f.claim(requested_at=datetime(2026, 4, 2, 8, tzinfo=UTC)),
    )
    assert "it ended at the end of 2026-04-01, Europe/Berlin" in _rule(result, "window").message


def test_window_falls_back_to_order_date(policy: Policy) -> None:
    ordered = datetime(2026, 3, 1, 12, tzinfo=UTC)
    line = f.line(ordered_at=ordered, delivered_at=None)
    inside = check_eligibility(
        policy=policy, line=line, claim=f.claim(requested_at=ordered + timedelta(days=30))
    )
    outside = check_eligibility(
        policy=policy, line=line, claim=f.claim(requested_at=ordered + timedelta(days=31))
    )
    assert _rule(inside, "window").passed
    assert not _rule(outside, "window").passed
    assert "after the order (delivery date unknown)" in _rule(outside, "window").message


def test_naive_datetimes_are_utc(policy: Policy) -> None:
    # 23:30 naive = 23:30 UTC = 00:30 next day in Berlin, the same as the aware LATE_DELIVERY.
    line = f.line(ordered_at=datetime(2026, 2, 27), delivered_at=datetime(2026, 3, 1, 23, 30))
    last_in = check_eligibility(
        policy=policy, line=line, claim=f.claim(requested_at=datetime(2026, 4, 1, 21, 59))
    )
    first_out = check_eligibility(
        policy=policy, line=line, claim=f.claim(requested_at=datetime(2026, 4, 1, 22, 0))
    )
    assert _rule(last_in, "window").passed
    assert not _rule(first_out, "window").passed


@pytest.mark.parametrize(
    ("zone", "requested", "passed"),
    [
        # Delivered 05:00 UTC on 2 March = 21:00 on 1 March in Los Angeles: day 0 is 1 March,
        # so day 30 ends at the end of 31 March, Pacific (07:00 UTC on 1 April, PDT).
        ("America/Los_Angeles", datetime(2026, 4, 1, 6, 59, tzinfo=UTC), True),
        ("America/Los_Angeles", datetime(2026, 4, 1, 7, 0, tzinfo=UTC), False),
        # The same delivery in Tokyo is 14:00 on 2 March: the window runs to the end of 1 April.
        ("Asia/Tokyo", datetime(2026, 4, 1, 14, 59, tzinfo=UTC), True),
        ("Asia/Tokyo", datetime(2026, 4, 1, 15, 0, tzinfo=UTC), False),
    ],
)
def test_window_counts_in_the_policy_zone(zone: str, requested: datetime, passed: bool) -> None:
    raw = yaml.safe_load(BUNDLED_POLICY.read_text())
    raw["timezone"] = zone
    policy = Policy.from_mapping(raw)
    delivered = datetime(2026, 3, 2, 5, 0, tzinfo=UTC)
    result = check_eligibility(
        policy=policy,
        line=f.line(ordered_at=delivered - timedelta(days=1), delivered_at=delivered),
        claim=f.claim(requested_at=requested),
    )
    assert _rule(result, "window").passed is passed


def test_deadline_is_local_midnight_across_dst(policy: Policy) -> None:
    deadline = window_deadline(policy=policy, start=LATE_DELIVERY, days=30)
    assert deadline.astimezone(UTC) == datetime(2026, 4, 1, 22, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("reason", "requested_days", "passed", "message"),
    [
        ("defective", 200, True, "the apparel faulty-goods window is 730 days"),
        ("damaged_on_arrival", 31, True, "faulty-goods window is 730 days"),
        ("defective", 800, False, "the apparel faulty-goods window is 730 days"),
        ("wrong_size", 31, False, "the apparel window is 30 days"),
    ],
)
def test_faulty_goods_get_the_longer_window(
    policy: Policy, reason: str, requested_days: int, passed: bool, message: str
) -> None:
    result = check_eligibility(
        policy=policy,
        line=f.line(delivered_at=f.DELIVERED),
        claim=f.claim(
            reason_code=reason, requested_at=f.DELIVERED + timedelta(days=requested_days)
        ),
    )
    rule = _rule(result, "window")
    assert rule.passed is passed
    assert message in rule.message


def _final_sale_policy() -> Policy:
    raw = yaml.safe_load(BUNDLED_POLICY.read_text())
    raw["categories"]["boxed"]["final_sale_returnable"] = True
    return Policy.from_mapping(raw)


RULE_CASES = [
    # (rule, line overrides, claim overrides, passed, reason_code, message fragment)
    ("final_sale", {}, {}, True, "not_final_sale", "not sold as final sale"),
    (
        "final_sale",
        {"final_sale": True},
        {"reason_code": "no_longer_needed"},
        False,
        "final_sale",
        "final-sale items cannot be returned for no_longer_needed",
    ),
    (
        "final_sale",
        {"final_sale": True},
        {"reason_code": "defective"},
        True,
        "final_sale_faulty_exception",
        "which final sale does not exclude",
    ),
    (
        "non_returnable_category",
        {"category": "hygiene"},
        {"reason_code": "wrong_size"},
        False,
        "non_returnable_category",
        "hygiene items cannot be returned unless faulty",
    ),
    (
        "non_returnable_category",
        {"category": "hygiene"},
        {"reason_code": "damaged_on_arrival"},
        True,
        "non_returnable_faulty_exception",
        "is a fault",
    ),
    (
        "non_returnable_category",
        {},
        {},
        True,
        "returnable_category",
        "apparel items are returnable",
    ),
    ("quantity", {"quantity": 3}, {"quantity": 2}, True, "quantity_ok", "returning 2 of 3"),
    (
        "quantity",
        {"quantity": 1},
        {"quantity": 2},
        False,
        "quantity_exceeds_purchased",
        "returning 2 but only 1 of 1 purchased can still be returned",
    ),
    (
        "quantity",
        {"quantity": 3},
        {"quantity": 2, "previously_returned_quantity": 2},
        False,
        "quantity_exceeds_purchased",
        "only 1 of 3 purchased can still be returned (2 already returned)",
    ),
    (
        "quantity",
        {"quantity": 3},
        {"quantity": 1, "previously_returned_quantity": 2},
        True,
        "quantity_ok",
        "returning 1 of 3",
    ),
    ("timeline", {}, {}, True, "claim_after_order", "after the order was placed"),
    (
        "timeline",
        {"delivered_at": None},
        {"requested_at": f.ORDERED - timedelta(days=1)},
        False,
        "claim_before_order",
        "check the order data",
    ),
]


@pytest.mark.parametrize(
    ("rule", "line_over", "claim_over", "passed", "code", "message"), RULE_CASES
)
def test_rules(
    policy: Policy,
    rule: str,
    line_over: dict[str, Any],
    claim_over: dict[str, Any],
    passed: bool,
    code: str,
    message: str,
) -> None:
    result = check_eligibility(policy=policy, line=f.line(**line_over), claim=f.claim(**claim_over))
    found = _rule(result, rule)
    assert found.passed is passed
    assert found.reason_code == code
    assert message in found.message
    assert result.eligible is all(r.passed for r in result.rules)
    if not passed:
        assert not result.eligible
        assert found in result.failed


def test_final_sale_returnable_category() -> None:
    result = check_eligibility(
        policy=_final_sale_policy(),
        line=f.line(category="boxed", final_sale=True),
        claim=f.claim(reason_code="no_longer_needed"),
    )
    assert _rule(result, "final_sale").reason_code == "final_sale_returnable"
    assert result.eligible


def test_every_rule_reports_even_when_several_fail(policy: Policy) -> None:
    result = check_eligibility(
        policy=policy,
        line=f.line(category="hygiene", final_sale=True, quantity=1),
        claim=f.claim(quantity=2, requested_at=f.DELIVERED + timedelta(days=90)),
    )
    assert {r.reason_code for r in result.failed} == {
        "outside_return_window",
        "final_sale",
        "non_returnable_category",
        "quantity_exceeds_purchased",
    }


_ZONES = ["Europe/Berlin", "America/New_York", "Asia/Kolkata", "Pacific/Auckland", "UTC"]


@settings(max_examples=300, deadline=None)
@given(
    zone=st.sampled_from(_ZONES),
    delivered=st.datetimes(
        min_value=datetime(2025, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
    ),
    window=st.sampled_from([0, 1, 14, 30, 60]),
)
def test_window_boundary_is_local_midnight_in_any_zone(
    zone: str, delivered: datetime, window: int
) -> None:
    """Whatever the zone and DST, the last microsecond of local day N is in and the next is out."""
    raw = yaml.safe_load(BUNDLED_POLICY.read_text())
    raw["timezone"] = zone
    raw["categories"]["apparel"]["window_days"] = window
    zoned = Policy.from_mapping(raw)
    deadline = window_deadline(policy=zoned, start=delivered, days=window)
    local_deadline = deadline.astimezone(ZoneInfo(zone))
    assert (local_deadline.hour, local_deadline.minute, local_deadline.second) == (0, 0, 0)
    days = (local_deadline.date() - delivered.astimezone(ZoneInfo(zone)).date()).days
    assert days == window + 1
    line = f.line(ordered_at=delivered - timedelta(days=1), delivered_at=delivered)
    last_in = check_eligibility(
        policy=zoned, line=line, claim=f.claim(requested_at=deadline - timedelta(microseconds=1))
    )
    first_out = check_eligibility(policy=zoned, line=line, claim=f.claim(requested_at=deadline))
    assert _rule(last_in, "window").passed
    assert not _rule(first_out, "window").passed
