"""Eligibility: may this order line be returned at all? One rule per policy fact, each explained.

Pure functions over `OrderLineFacts` and `ReturnClaim`; the condition of the item is not an
eligibility question (a model grade never makes a return ineligible: see `engine.decide`).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from inspection.decisions.policy import CategoryPolicy, Policy
from inspection.decisions.types import EligibilityResult, OrderLineFacts, ReturnClaim, RuleResult


def as_aware(moment: datetime) -> datetime:
    """A timezone-aware datetime; naive values are UTC, as the store writes them."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def local_date(moment: datetime, zone: ZoneInfo) -> date:
    """The calendar day `moment` falls on in the policy's zone."""
    return as_aware(moment).astimezone(zone).date()


def window_deadline(*, policy: Policy, start: datetime, days: int) -> datetime:
    """The last instant of a window: the end of local day `start + days` in the policy zone."""
    zone = policy.zone
    last_day = local_date(start, zone) + timedelta(days=days)
    # Midnight after the last day, local time; "< deadline" keeps DST days right.
    return datetime.combine(last_day + timedelta(days=1), time(0), tzinfo=zone)


def is_faulty_claim(*, policy: Policy, claim: ReturnClaim) -> bool:
    """True when the customer's reason puts the fault with the retailer."""
    return claim.reason_code in policy.faulty_reasons


def _window_rule(
    *, policy: Policy, category: CategoryPolicy, line: OrderLineFacts, claim: ReturnClaim
) -> RuleResult:
    faulty = is_faulty_claim(policy=policy, claim=claim)
    window = category.window_for(faulty=faulty)
    start = line.delivered_at or line.ordered_at
    since = "delivery" if line.delivered_at is not None else "the order (delivery date unknown)"
    zone = policy.zone
    days = (local_date(claim.requested_at, zone) - local_date(start, zone)).days
    deadline = window_deadline(policy=policy, start=start, days=window)
    kind = f"{category.name} {'faulty-goods ' if faulty and window != category.window_days else ''}"
    shown = max(days, 0)
    unit = "day" if shown == 1 else "days"
    if as_aware(claim.requested_at) < deadline:
        return RuleResult(
            rule="window",
            passed=True,
            reason_code="within_return_window",
            message=f"returned {shown} {unit} after {since}; the {kind}window is {window} days",
        )
    last = (deadline - timedelta(days=1)).date().isoformat()
    return RuleResult(
        rule="window",
        passed=False,
        reason_code="outside_return_window",
        message=(
            f"returned {shown} {unit} after {since}; the {kind}window is {window} days "
            f"(it ended at the end of {last}, {policy.timezone})"
        ),
    )


def _final_sale_rule(
    *, policy: Policy, category: CategoryPolicy, line: OrderLineFacts, claim: ReturnClaim
) -> RuleResult:
    if not line.final_sale:
        return RuleResult(
            rule="final_sale",
            passed=True,
            reason_code="not_final_sale",
            message="the item was not sold as final sale",
        )
    if category.final_sale_returnable:
        return RuleResult(
            rule="final_sale",
            passed=True,
            reason_code="final_sale_returnable",
            message=f"final-sale {category.name} items may be returned under this policy",
        )
    if is_faulty_claim(policy=policy, claim=claim):
        return RuleResult(
            rule="final_sale",
            passed=True,
            reason_code="final_sale_faulty_exception",
            message=(
                f"sold as final sale, but the reason ({claim.reason_code}) is a fault, "
                "which final sale does not exclude"
            ),
        )
    return RuleResult(
        rule="final_sale",
        passed=False,
        reason_code="final_sale",
        message=(
            f"sold as final sale; final-sale items cannot be returned for {claim.reason_code}"
        ),
    )


def _category_rule(*, policy: Policy, line: OrderLineFacts, claim: ReturnClaim) -> RuleResult:
    if policy.is_returnable_category(line.category):
        return RuleResult(
            rule="non_returnable_category",
            passed=True,
            reason_code="returnable_category",
            message=f"{line.category} items are returnable",
        )
    if is_faulty_claim(policy=policy, claim=claim):
        return RuleResult(
            rule="non_returnable_category",
            passed=True,
            reason_code="non_returnable_faulty_exception",
            message=(
                f"{line.category} items are not returnable for a change of mind, but the reason "
                f"({claim.reason_code}) is a fault"
            ),
        )
    return RuleResult(
        rule="non_returnable_category",
        passed=False,
        reason_code="non_returnable_category",
        message=f"{line.category} items cannot be returned unless faulty",
    )


def _quantity_rule(*, line: OrderLineFacts, claim: ReturnClaim) -> RuleResult:
    left = line.quantity - claim.previously_returned_quantity
    if claim.quantity <= left:
        return RuleResult(
            rule="quantity",
            passed=True,
            reason_code="quantity_ok",
            message=f"returning {claim.quantity} of {line.quantity} purchased",
        )
    earlier = (
        f" ({claim.previously_returned_quantity} already returned)"
        if claim.previously_returned_quantity
        else ""
    )
    return RuleResult(
        rule="quantity",
        passed=False,
        reason_code="quantity_exceeds_purchased",
        message=(
            f"returning {claim.quantity} but only {max(left, 0)} of {line.quantity} purchased "
            f"can still be returned{earlier}"
        ),
    )


def _timeline_rule(*, line: OrderLineFacts, claim: ReturnClaim) -> RuleResult:
    # A claim dated before the order exists points at bad data, not at the customer.
    if as_aware(claim.requested_at) >= as_aware(line.ordered_at):
        return RuleResult(
            rule="timeline",
            passed=True,
            reason_code="claim_after_order",
            message="the return was opened after the order was placed",
        )
    return RuleResult(
        rule="timeline",
        passed=False,
        reason_code="claim_before_order",
        message=(
            f"the return is dated {as_aware(claim.requested_at).isoformat()}, before the order "
            f"({as_aware(line.ordered_at).isoformat()}); check the order data"
        ),
    )


def check_eligibility(
    *, policy: Policy, line: OrderLineFacts, claim: ReturnClaim
) -> EligibilityResult:
    """Runs every eligibility rule of the policy over one order line and claim."""
    category = policy.category(line.category)
    rules = [
        _window_rule(policy=policy, category=category, line=line, claim=claim),
        _final_sale_rule(policy=policy, category=category, line=line, claim=claim),
        _category_rule(policy=policy, line=line, claim=claim),
        _quantity_rule(line=line, claim=claim),
        _timeline_rule(line=line, claim=claim),
    ]
    return EligibilityResult(eligible=all(r.passed for r in rules), rules=rules)
