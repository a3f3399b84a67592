"""The decision engine: a table of situations with the outcome and reason codes each must get,
and hypothesis properties for the two promises (value limit, fraud never rejects)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inspection.decisions.eligibility import check_eligibility
from inspection.decisions.engine import decide
from inspection.decisions.fraud import combine_weights
from inspection.decisions.policy import FRAUD_SIGNALS, Policy
from inspection.decisions.types import (
    CustomerHistory,
    EligibilityResult,
    FraudAssessment,
    FraudSignal,
    GradeFacts,
    OrderLineFacts,
    ReturnClaim,
)
from tests.decisions import factories as f
from tests.decisions.conftest import BUNDLED_POLICY


def _decide(policy: Policy, **over: Any) -> Any:
    line = over.pop("line", f.line())
    claim = over.pop("claim", f.claim())
    args: dict[str, Any] = {
        "policy": policy,
        "stage": "claim",
        "line": line,
        "eligibility": check_eligibility(policy=policy, line=line, claim=claim or f.claim()),
        "fraud": f.fraud(),
        "grade": f.grade(),
        "claim": claim,
        "customer": f.customer(),
    }
    args.update(over)
    return decide(**args)


# (case, overrides, outcome, reason codes that must be present)
CASES: list[tuple[str, dict[str, Any], str, list[str]]] = [
    ("clean-good-customer", {}, "approve_refund", ["eligible", "instant_refund"]),
    ("no-customer-history", {"customer": None}, "approve", ["eligible", "auto_approved"]),
    (
        "no-claim-no-instant",
        {"claim": None, "customer": f.customer()},
        "approve",
        ["auto_approved"],
    ),
    (
        "outside-window",
        {"claim": f.claim(requested_at=f.DELIVERED + timedelta(days=45))},
        "ineligible",
        ["outside_return_window"],
    ),
    (
        "outside-window-with-fraud",
        {
            "claim": f.claim(requested_at=f.DELIVERED + timedelta(days=45)),
            "fraud": f.fraud("photo_reuse", "prior_fraud_flags", weight=0.6),
        },
        "ineligible",
        ["outside_return_window"],
    ),
    ("final-sale", {"line": f.line(final_sale=True)}, "ineligible", ["final_sale"]),
    (
        "fraud-score-high",
        {"fraud": f.fraud("new_account", "high_return_rate", weight=0.3, score=0.51)},
        "needs_review",
        ["fraud_score_high", "new_account", "high_return_rate"],
    ),
    (
        "always-review-signal-with-low-score",
        {"fraud": f.fraud("swapped_item", weight=0.05)},
        "needs_review",
        ["swapped_item"],
    ),
    (
        "photo-reuse",
        {"fraud": f.fraud("photo_reuse", weight=0.6)},
        "needs_review",
        ["fraud_score_high", "photo_reuse"],
    ),
    (
        "weak-signal-below-threshold",
        {"fraud": f.fraud("exif_missing", weight=0.1)},
        "approve_refund",
        ["instant_refund"],
    ),
    (
        "signal-blocks-instant-refund-only",
        {"fraud": f.fraud("new_account", weight=0.3)},
        "approve",
        ["auto_approved"],
    ),
    ("grade-missing", {"grade": None}, "needs_review", ["grade_missing"]),
    (
        "grader-asks-review",
        {"grade": f.grade(needs_review=True, reason_codes=["grade_spread"])},
        "needs_review",
        ["grade_needs_review"],
    ),
    (
        "low-confidence",
        {"grade": f.grade(confidence=0.59)},
        "needs_review",
        ["low_grade_confidence"],
    ),
    ("confidence-at-threshold", {"grade": f.grade(confidence=0.6)}, "approve", ["auto_approved"]),
    (
        "electronics-threshold-higher",
        {"line": f.line(category="electronics"), "grade": f.grade(confidence=0.74)},
        "needs_review",
        ["low_grade_confidence"],
    ),
    (
        "inspector-grade-no-confidence-check",
        {"grade": f.grade(confidence=0.3, decided_by="inspector")},
        "approve",
        ["auto_approved"],
    ),
    (
        "change-of-mind-worn",
        {"grade": f.grade(grade="refurbish")},
        "needs_review",
        ["condition_not_accepted"],
    ),
    (
        "defective-reject-is-fine",
        {"grade": f.grade(grade="reject"), "claim": f.claim(reason_code="defective")},
        "approve",
        ["auto_approved"],
    ),
    (
        "hard-goods-refurbish-change-of-mind",
        {"line": f.line(category="hard_goods"), "grade": f.grade(grade="refurbish")},
        "approve",
        ["auto_approved"],
    ),
    ("at-auto-limit", {"line": f.line(price_cents=50_000)}, "approve", ["auto_approved"]),
    (
        "above-auto-limit",
        {"line": f.line(price_cents=50_001)},
        "needs_review",
        ["above_auto_approve_limit"],
    ),
    (
        "quantity-pushes-over-limit",
        {"line": f.line(price_cents=30_000, quantity=2), "claim": f.claim(quantity=2)},
        "needs_review",
        ["above_auto_approve_limit"],
    ),
    ("above-instant-limit", {"line": f.line(price_cents=10_001)}, "approve", ["auto_approved"]),
    (
        "whole-return-over-limit",
        {"return_value_cents": 50_001},
        "needs_review",
        ["above_auto_approve_limit"],
    ),
    ("whole-return-blocks-instant", {"return_value_cents": 10_001}, "approve", ["auto_approved"]),
    (
        "young-account",
        {"customer": f.customer(account_created_at=f.CLAIMED - timedelta(days=89))},
        "approve",
        [],
    ),
    ("few-orders", {"customer": f.customer(orders_count=2, returns_count=0)}, "approve", []),
    ("many-recent-returns", {"customer": f.customer(returns_last_90d=4)}, "approve", []),
    ("high-rate", {"customer": f.customer(orders_count=10, returns_count=5)}, "approve", []),
    ("prior-flag", {"customer": f.customer(prior_fraud_flags=1)}, "approve", []),
    ("grade-confidence-for-instant", {"grade": f.grade(confidence=0.84)}, "approve", []),
    ("inspection-approves", {"stage": "inspection"}, "approve", ["eligible", "inspection_passed"]),
    (
        "inspection-no-grade",
        {"stage": "inspection", "grade": None},
        "needs_review",
        ["grade_missing"],
    ),
    (
        "inspection-swapped",
        {"stage": "inspection", "fraud": f.fraud("swapped_item", weight=0.7)},
        "needs_review",
        ["swapped_item", "fraud_score_high"],
    ),
]


@pytest.mark.parametrize(("case", "over", "outcome", "codes"), CASES, ids=[c[0] for c in CASES])
def test_decision(
    policy: Policy, case: str, over: dict[str, Any], outcome: str, codes: list[str]
) -> None:
    decision = _decide(policy, **over)
    assert decision.outcome == outcome, (case, decision.reason_codes, decision.messages)
    for code in codes:
        assert code in decision.reason_codes, (case, decision.reason_codes)
    assert len(decision.messages) >= len(decision.reason_codes) or decision.outcome in (
        "approve",
        "approve_refund",
    )
    assert decision.policy_version == policy.version
    json.dumps(decision.inputs)  # inputs are JSON-able for the audit log
    assert decision.inputs["value_cents"] >= 0


def test_instant_refund_blockers_are_explained(policy: Policy) -> None:
    decision = _decide(policy, customer=f.customer(orders_count=1, returns_count=0))
    assert decision.outcome == "approve"
    assert any("no instant refund: 1 orders (needs 3)" in m for m in decision.messages)


def test_decision_carries_versions_inputs_and_quote(policy: Policy) -> None:
    decision = _decide(policy, grade=f.grade(model_version="grader-2.3"))
    assert decision.model_version == "grader-2.3"
    assert decision.refund is not None
    assert decision.refund.amount_cents == 4_999
    assert decision.inputs["thresholds"]["auto_approve_max_value_cents"] == 50_000
    assert decision.inputs["thresholds"]["fraud_review_threshold"] == policy.fraud.review_threshold
    assert decision.inputs["grade"]["confidence"] == 0.93


def test_review_messages_show_the_evidence(policy: Policy) -> None:
    decision = _decide(
        policy, fraud=f.fraud("photo_reuse", weight=0.6), grade=f.grade(confidence=0.4)
    )
    assert decision.outcome == "needs_review"
    assert "photo_reuse seen" in decision.messages
    assert any("confidence 0.40, below 0.60" in m for m in decision.messages)
    assert decision.refund is not None  # the reviewer sees what would be paid


def test_no_grade_needed_when_category_requires_no_photos() -> None:
    raw = yaml.safe_load(BUNDLED_POLICY.read_text())
    raw["categories"]["boxed"]["photos_required"] = 0
    policy = Policy.from_mapping(raw)
    decision = _decide(policy, line=f.line(category="boxed"), grade=None)
    assert decision.outcome == "approve"
    assert decision.refund is None


def test_thresholds_come_from_the_policy() -> None:
    raw = yaml.safe_load(BUNDLED_POLICY.read_text())
    raw["auto_approve"]["max_value_cents"] = 1_000
    raw["fraud"]["review_threshold"] = 0.05
    raw["categories"]["apparel"]["review"] = {"min_confidence": 0.95}
    policy = Policy.from_mapping(raw)
    decision = _decide(policy, fraud=f.fraud("exif_missing", weight=0.1))
    assert decision.outcome == "needs_review"
    assert {"above_auto_approve_limit", "fraud_score_high", "low_grade_confidence"} <= set(
        decision.reason_codes
    )


# ---- properties -------------------------------------------------------------------------------

_signals = st.lists(
    st.builds(
        FraudSignal,
        reason_code=st.sampled_from(FRAUD_SIGNALS),
        weight=st.floats(min_value=0, max_value=1),
        message=st.just("signal"),
    ),
    max_size=6,
)


def _assessment(signals: list[FraudSignal]) -> FraudAssessment:
    return FraudAssessment(score=combine_weights([s.weight for s in signals]), signals=signals)


_situations = st.fixed_dictionaries(
    {
        "stage": st.sampled_from(["claim", "inspection"]),
        "category": st.sampled_from(
            ["electronics", "apparel", "shoes", "boxed", "hard_goods", "toys"]
        ),
        "currency": st.sampled_from(["EUR", "USD", "JPY"]),
        "price": st.integers(min_value=0, max_value=2_000_000),
        "line_quantity": st.integers(min_value=1, max_value=5),
        "claim_quantity": st.integers(min_value=1, max_value=5),
        "reason": st.sampled_from(
            [
                "damaged_on_arrival",
                "defective",
                "wrong_item",
                "not_as_described",
                "no_longer_needed",
                "wrong_size",
                "other",
            ]
        ),
        "days": st.integers(min_value=-2, max_value=900),
        "final_sale": st.booleans(),
        "grade": st.none() | st.sampled_from(["resell", "refurbish", "reject"]),
        "confidence": st.floats(min_value=0, max_value=1),
        "grade_review": st.booleans(),
        "decided_by": st.sampled_from(["model", "inspector"]),
        "orders": st.integers(min_value=0, max_value=50),
        "returns": st.integers(min_value=0, max_value=50),
        "age_days": st.integers(min_value=0, max_value=3000),
        "with_customer": st.booleans(),
        "signals": _signals,
        "other_lines_cents": st.none() | st.integers(min_value=0, max_value=2_000_000),
    }
)


def _from_situation(policy: Policy, s: dict[str, Any]) -> dict[str, Any]:
    delivered = datetime(2026, 3, 1, 23, 30, tzinfo=UTC)
    line = f.line(
        category=s["category"],
        currency=s["currency"],
        price_cents=s["price"],
        quantity=s["line_quantity"],
        final_sale=s["final_sale"],
        ordered_at=delivered - timedelta(days=3),
        delivered_at=delivered,
    )
    claim = f.claim(
        reason_code=s["reason"],
        quantity=s["claim_quantity"],
        requested_at=delivered + timedelta(days=s["days"], hours=5),
    )
    grade = (
        None
        if s["grade"] is None
        else f.grade(
            grade=s["grade"],
            confidence=s["confidence"],
            needs_review=s["grade_review"],
            decided_by=s["decided_by"],
        )
    )
    customer = (
        f.customer(
            orders_count=s["orders"],
            returns_count=min(s["returns"], s["orders"]),
            account_created_at=delivered - timedelta(days=s["age_days"]),
        )
        if s["with_customer"]
        else None
    )
    return {
        "policy": policy,
        "stage": s["stage"],
        "line": line,
        "eligibility": check_eligibility(policy=policy, line=line, claim=claim),
        "fraud": _assessment(s["signals"]),
        "grade": grade,
        "claim": claim,
        "customer": customer,
        "return_value_cents": None
        if s["other_lines_cents"] is None
        else line.price_cents * claim.quantity + s["other_lines_cents"],
    }


@settings(
    max_examples=400, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None
)
@given(_situations)
def test_never_auto_approves_above_the_value_limit(
    policy: Policy, situation: dict[str, Any]
) -> None:
    args = _from_situation(policy, situation)
    decision = decide(**args)
    value = max(args["line"].price_cents * args["claim"].quantity, args["return_value_cents"] or 0)
    limit = policy.auto_approve.max_value_cents.for_currency(args["line"].currency)
    if decision.outcome in ("approve", "approve_refund"):
        assert value <= limit
    if decision.outcome == "approve_refund":
        assert args["stage"] == "claim"
        assert value <= policy.instant_refund.max_value_cents.for_currency(args["line"].currency)
    if value > limit and args["eligibility"].eligible:
        assert decision.outcome == "needs_review"
        assert "above_auto_approve_limit" in decision.reason_codes


@settings(
    max_examples=400, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None
)
@given(_situations)
def test_fraud_alone_never_makes_a_return_ineligible(
    policy: Policy, situation: dict[str, Any]
) -> None:
    args = _from_situation(policy, situation)
    with_fraud = decide(**args)
    without_fraud = decide(**{**args, "fraud": FraudAssessment(score=0.0, signals=[])})
    # Ineligible depends on the eligibility rules only.
    assert (with_fraud.outcome == "ineligible") == (not args["eligibility"].eligible)
    assert (without_fraud.outcome == "ineligible") == (not args["eligibility"].eligible)
    # Fraud evidence can only send a return to a person, never to another automatic answer.
    if with_fraud.outcome != without_fraud.outcome:
        assert with_fraud.outcome in ("needs_review", "approve")
        assert without_fraud.outcome in ("approve", "approve_refund")
    if args["eligibility"].eligible and args["fraud"].score >= policy.fraud.review_threshold:
        assert with_fraud.outcome == "needs_review"
        assert all(s.reason_code in with_fraud.reason_codes for s in args["fraud"].signals)


@settings(
    max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None
)
@given(_situations)
def test_a_decision_replays_from_its_recorded_inputs(
    policy: Policy, situation: dict[str, Any]
) -> None:
    decision = decide(**_from_situation(policy, situation))
    recorded = json.loads(json.dumps(decision.inputs))  # as stored in the database
    replayed = decide(
        policy=policy,
        stage=recorded["stage"],
        line=OrderLineFacts.model_validate(recorded["line"]),
        eligibility=EligibilityResult.model_validate(recorded["eligibility"]),
        fraud=FraudAssessment.model_validate(recorded["fraud"]),
        grade=GradeFacts.model_validate(recorded["grade"]) if recorded["grade"] else None,
        claim=ReturnClaim.model_validate(recorded["claim"]) if recorded["claim"] else None,
        customer=CustomerHistory.model_validate(recorded["customer"])
        if recorded["customer"]
        else None,
        return_value_cents=recorded["return_value_cents"],
    )
    assert replayed.model_dump() == decision.model_dump()
