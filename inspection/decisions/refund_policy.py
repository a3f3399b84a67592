"""Refund quotes: what the policy pays back for a grade, in integer cents with each deduction named.

Invariants (tested): `amount_cents == gross_cents - sum(deductions)`, every deduction is
positive, and `0 <= amount_cents <= gross_cents` (never more than was paid, never negative).
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from inspection.decisions.policy import Policy
from inspection.decisions.types import OrderLineFacts, RefundQuote, ReturnReason
from inspection.grading.types import Grade


def _percent_of(cents: int, percent: Decimal) -> int:
    """`percent` % of `cents`, rounded half up to whole minor units (no float on the way)."""
    return int((Decimal(cents) * percent / Decimal(100)).quantize(Decimal(1), ROUND_HALF_UP))


def quote_refund(
    *,
    policy: Policy,
    line: OrderLineFacts,
    grade: Grade,
    quantity: int = 1,
    reason_code: ReturnReason | None = None,
) -> RefundQuote:
    """Quotes the refund for `quantity` units of `line` returned in `grade` condition."""
    if quantity < 1:
        raise ValueError("quantity must be at least 1")
    units = min(quantity, line.quantity)  # never refund units that were not bought
    gross = line.price_cents * units
    if reason_code is not None and reason_code in policy.faulty_reasons:
        # The retailer's fault: the customer gets back what they paid, whatever the condition.
        return RefundQuote(
            amount_cents=gross,
            currency=line.currency,
            gross_cents=gross,
            deductions=[],
            grade=grade,
            policy_version=policy.version,
        )
    rule = policy.category(line.category).refund[grade]
    wanted: list[tuple[str, int]] = []
    if rule.percent < 100:
        wanted.append(
            (
                f"{grade} condition: {rule.percent}% refunded",
                gross - _percent_of(gross, rule.percent),
            )
        )
    if rule.restocking_fee_percent > 0:
        wanted.append(
            (
                f"restocking fee {rule.restocking_fee_percent}%",
                _percent_of(gross, rule.restocking_fee_percent),
            )
        )
    wanted.extend((d.reason, d.amount_cents) for d in rule.fixed_deductions)

    reasons: list[str] = []
    amounts: list[int] = []
    remaining = gross
    for reason, amount in wanted:
        taken = min(amount, remaining)  # a deduction never takes the refund below zero
        if taken > 0:
            reasons.append(reason)
            amounts.append(taken)
            remaining -= taken

    floor = min(rule.minimum_cents, gross)
    if remaining < floor:
        # Give back the shortfall from the last deductions first, so the list still adds up.
        shortfall = floor - remaining
        for i in reversed(range(len(amounts))):
            back = min(shortfall, amounts[i])
            amounts[i] -= back
            shortfall -= back
            remaining += back

    return RefundQuote(
        amount_cents=remaining,
        currency=line.currency,
        gross_cents=gross,
        deductions=[
            {"reason": r, "amount_cents": a} for r, a in zip(reasons, amounts, strict=True) if a > 0
        ],
        grade=grade,
        policy_version=policy.version,
    )
