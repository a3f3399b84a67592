"""Refund quotes: integer cents per grade and category, deductions listed, never negative,
never above what was paid."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inspection.decisions.policy import Policy
from inspection.decisions.refund_policy import quote_refund
from tests.decisions import factories as f
from tests.decisions.conftest import BUNDLED_POLICY

# (category, grade, price, quantity, reason, amount, deductions as (reason fragment, cents))
CASES: list[tuple[str, str, int, int, str | None, int, list[tuple[str, int]]]] = [
    ("apparel", "resell", 4_999, 1, None, 4_999, []),
    ("apparel", "refurbish", 4_999, 1, None, 3_199, [("70% refunded", 1_500), ("cleaning", 300)]),
    ("apparel", "reject", 4_999, 1, None, 0, [("0% refunded", 4_999)]),
    (
        "electronics",
        "refurbish",
        4_999,
        1,
        None,
        1_999,
        [("80% refunded", 1_000), ("restocking fee 10%", 500), ("data wipe", 1_500)],
    ),
    ("electronics", "resell", 19_999, 2, None, 35_998, [("restocking fee 10%", 4_000)]),
    ("electronics", "reject", 4_999, 1, None, 1_000, [("20% refunded", 3_999)]),
    # A fixed deduction larger than what is left is capped: never a negative refund.
    (
        "electronics",
        "refurbish",
        1_000,
        1,
        None,
        0,
        [("80%", 200), ("restocking", 100), ("data wipe", 700)],
    ),
    ("boxed", "refurbish", 2_000, 1, None, 1_600, [("90%", 200), ("replacement packaging", 200)]),
    ("hard_goods", "reject", 12_345, 1, None, 1_235, [("10% refunded", 11_110)]),
    ("garden", "refurbish", 1_000, 1, None, 850, [("85%", 150)]),  # default category
    # Faulty reasons: the customer gets back what they paid, whatever the condition.
    ("electronics", "reject", 4_999, 1, "defective", 4_999, []),
    ("apparel", "refurbish", 4_999, 1, "damaged_on_arrival", 4_999, []),
    ("apparel", "refurbish", 4_999, 1, "wrong_size", 3_199, [("70%", 1_500), ("cleaning", 300)]),
    # Quantity is capped at what was bought.
    ("apparel", "resell", 1_000, 5, None, 2_000, []),
    ("apparel", "resell", 0, 1, None, 0, []),
]


@pytest.mark.parametrize(
    ("category", "grade", "price", "quantity", "reason", "amount", "deductions"), CASES
)
def test_quote(
    policy: Policy,
    category: str,
    grade: Any,
    price: int,
    quantity: int,
    reason: Any,
    amount: int,
    deductions: list[tuple[str, int]],
) -> None:
    line = f.line(category=category, price_cents=price, quantity=min(quantity, 2))
    quote = quote_refund(
        policy=policy, line=line, grade=grade, quantity=quantity, reason_code=reason
    )
    assert quote.amount_cents == amount
    assert quote.currency == "EUR"
    assert quote.grade == grade
    assert quote.policy_version == policy.version
    assert [(d["amount_cents"]) for d in quote.deductions] == [c for _, c in deductions]
    for got, (fragment, _) in zip(quote.deductions, deductions, strict=True):
        assert fragment in got["reason"]
    assert (
        quote.gross_cents - sum(d["amount_cents"] for d in quote.deductions) == quote.amount_cents
    )


def test_minimum_gives_back_the_last_deductions_first() -> None:
    raw = yaml.safe_load(BUNDLED_POLICY.read_text())
    raw["categories"]["electronics"]["refund"]["reject"] = {
        "percent": 0,
        "restocking_fee_percent": 0,
        "minimum_cents": 1_500,
    }
    policy = Policy.from_mapping(raw)
    quote = quote_refund(
        policy=policy, line=f.line(category="electronics", price_cents=4_000), grade="reject"
    )
    assert quote.amount_cents == 1_500
    assert quote.deductions == [{"reason": "reject condition: 0% refunded", "amount_cents": 2_500}]
    # ... but the floor never exceeds what was paid.
    cheap = quote_refund(
        policy=policy, line=f.line(category="electronics", price_cents=900), grade="reject"
    )
    assert cheap.amount_cents == 900
    assert cheap.deductions == []


def test_half_cents_round_half_up(policy: Policy) -> None:
    # 85% of 1 001 = 850.85 -> refund 851, deduction 150 (no float on the way).
    quote = quote_refund(
        policy=policy, line=f.line(category="garden", price_cents=1_001), grade="refurbish"
    )
    assert quote.amount_cents == 851


def test_quantity_must_be_positive(policy: Policy) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        quote_refund(policy=policy, line=f.line(), grade="resell", quantity=0)


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    category=st.sampled_from(["electronics", "apparel", "shoes", "boxed", "hard_goods", "other"]),
    grade=st.sampled_from(["resell", "refurbish", "reject"]),
    price=st.integers(min_value=0, max_value=10_000_000),
    bought=st.integers(min_value=1, max_value=10),
    quantity=st.integers(min_value=1, max_value=12),
    reason=st.none() | st.sampled_from(["defective", "no_longer_needed", "wrong_size"]),
)
def test_never_negative_never_above_paid(
    policy: Policy, category: str, grade: Any, price: int, bought: int, quantity: int, reason: Any
) -> None:
    line = f.line(category=category, price_cents=price, quantity=bought)
    quote = quote_refund(
        policy=policy, line=line, grade=grade, quantity=quantity, reason_code=reason
    )
    assert isinstance(quote.amount_cents, int)
    assert 0 <= quote.amount_cents <= quote.gross_cents <= price * bought
    assert all(
        isinstance(d["amount_cents"], int) and d["amount_cents"] > 0 for d in quote.deductions
    )
    assert (
        quote.gross_cents - sum(d["amount_cents"] for d in quote.deductions) == quote.amount_cents
    )
