"""The decision engine: eligibility, fraud signals and the grade in, one explained outcome out.

Outcomes, in order of precedence:
- `ineligible` only when a policy rule fails (window, final sale, ...): a fact about the order,
  never a fraud score and never a model grade on its own.
- `needs_review` when anything asks for a person: fraud score or an `always_review` signal, a
  missing / uncertain / flagged grade, a condition the policy does not accept automatically, or a
  value above the auto-approve limit.
- `approve_refund` (claim stage only) when the instant-refund rule holds as well.
- `approve` otherwise.
"""

from __future__ import annotations

from typing import Any

from inspection.decisions.eligibility import as_aware, is_faulty_claim
from inspection.decisions.policy import Policy
from inspection.decisions.refund_policy import quote_refund
from inspection.decisions.types import (
    CustomerHistory,
    Decision,
    EligibilityResult,
    FraudAssessment,
    GradeFacts,
    OrderLineFacts,
    RefundQuote,
    ReturnClaim,
    Stage,
)


def returned_value_cents(*, line: OrderLineFacts, claim: ReturnClaim | None) -> int:
    """Value of the units being returned (all units of the line when the claim is unknown)."""
    units = claim.quantity if claim is not None else line.quantity
    return line.price_cents * units


def _review_reasons(
    *,
    policy: Policy,
    stage: Stage,
    line: OrderLineFacts,
    fraud: FraudAssessment,
    grade: GradeFacts | None,
    claim: ReturnClaim | None,
    value_cents: int,
) -> list[tuple[str, str]]:
    category = policy.category(line.category)
    reasons: list[tuple[str, str]] = []
    threshold = policy.fraud.review_threshold
    if fraud.score >= threshold:
        reasons.append(
            (
                "fraud_score_high",
                f"fraud score {fraud.score:.2f} is at or above the review threshold "
                f"{threshold:.2f}",
            )
        )
        reasons.extend((s.reason_code, s.message) for s in fraud.signals)
    else:
        reasons.extend(
            (s.reason_code, s.message)
            for s in fraud.signals
            if s.reason_code in policy.fraud.always_review
        )

    if grade is None:
        if stage == "inspection" or category.photos_required > 0:
            reasons.append(
                ("grade_missing", "no grade from photos yet; a person must look at the item")
            )
    else:
        if grade.needs_review:
            flagged = ", ".join(grade.reason_codes) or "no reason given"
            reasons.append(("grade_needs_review", f"the grader asked for a person ({flagged})"))
        minimum = category.review.min_confidence
        if grade.decided_by == "model" and grade.confidence < minimum:
            reasons.append(
                (
                    "low_grade_confidence",
                    f"grade {grade.grade} has confidence {grade.confidence:.2f}, below "
                    f"{minimum:.2f} for {category.name}",
                )
            )
        faulty = claim is not None and is_faulty_claim(policy=policy, claim=claim)
        if not faulty and grade.grade not in category.change_of_mind_grades:
            reason = claim.reason_code if claim is not None else "an unknown reason"
            reasons.append(
                (
                    "condition_not_accepted",
                    f"returned for {reason} in {grade.grade} condition; {category.name} "
                    f"change-of-mind returns are accepted as "
                    f"{' or '.join(category.change_of_mind_grades)}",
                )
            )

    limit = policy.auto_approve.max_value_cents.for_currency(line.currency)
    if value_cents > limit:
        reasons.append(
            (
                "above_auto_approve_limit",
                f"value {value_cents} {line.currency} cents is above the auto-approve limit "
                f"{limit}; a person decides",
            )
        )
    return reasons


def instant_refund_blockers(
    *,
    policy: Policy,
    line: OrderLineFacts,
    fraud: FraudAssessment,
    grade: GradeFacts | None,
    claim: ReturnClaim | None,
    customer: CustomerHistory | None,
    value_cents: int,
) -> list[str]:
    """Why the instant-refund rule does not hold (empty when it does)."""
    rule = policy.instant_refund
    if not rule.enabled:
        return ["instant refunds are switched off"]
    blockers: list[str] = []
    limit = rule.max_value_cents.for_currency(line.currency)
    if value_cents > limit:
        blockers.append(f"value {value_cents} is above the instant-refund limit {limit}")
    if grade is None:
        blockers.append("no grade")
    else:
        if grade.grade not in rule.allowed_grades:
            blockers.append(f"grade {grade.grade} is not one of {', '.join(rule.allowed_grades)}")
        if grade.confidence < rule.min_grade_confidence:
            blockers.append(
                f"grade confidence {grade.confidence:.2f} is below {rule.min_grade_confidence:.2f}"
            )
    if fraud.score > rule.max_fraud_score:
        blockers.append(f"fraud score {fraud.score:.2f} is above {rule.max_fraud_score:.2f}")
    if customer is None or claim is None:
        blockers.append("customer standing unknown")
        return blockers
    age = (as_aware(claim.requested_at) - as_aware(customer.account_created_at)).days
    if age < rule.min_account_age_days:
        blockers.append(f"account is {age} days old (needs {rule.min_account_age_days})")
    if customer.orders_count < rule.min_orders:
        blockers.append(f"{customer.orders_count} orders (needs {rule.min_orders})")
    if customer.returns_last_90d > rule.max_returns_last_90d:
        blockers.append(
            f"{customer.returns_last_90d} returns in 90 days (at most {rule.max_returns_last_90d})"
        )
    if customer.orders_count and customer.returns_count / customer.orders_count > (
        rule.max_return_rate
    ):
        blockers.append(
            f"return rate {customer.returns_count / customer.orders_count:.0%} is above "
            f"{rule.max_return_rate:.0%}"
        )
    if customer.prior_fraud_flags > rule.max_prior_fraud_flags:
        blockers.append(f"{customer.prior_fraud_flags} prior fraud flag(s)")
    return blockers


def _quote(
    *, policy: Policy, line: OrderLineFacts, grade: GradeFacts | None, claim: ReturnClaim | None
) -> RefundQuote | None:
    if grade is None:
        return None
    return quote_refund(
        policy=policy,
        line=line,
        grade=grade.grade,
        quantity=claim.quantity if claim is not None else line.quantity,
        reason_code=claim.reason_code if claim is not None else None,
    )


def decide(
    *,
    policy: Policy,
    stage: Stage,
    line: OrderLineFacts,
    eligibility: EligibilityResult,
    fraud: FraudAssessment,
    grade: GradeFacts | None,
    claim: ReturnClaim | None = None,
    customer: CustomerHistory | None = None,
    return_value_cents: int | None = None,
) -> Decision:
    """Decides one returned line; pass `claim` and `customer` to allow instant refunds.

    `return_value_cents` is the value of the whole return when it holds several lines: the
    value limits then apply to the whole, so splitting a return into cheap lines cannot get an
    expensive one through without a person.
    """
    line_value = returned_value_cents(line=line, claim=claim)
    value_cents = max(line_value, return_value_cents or 0)
    inputs: dict[str, Any] = {
        "stage": stage,
        "line": line.model_dump(mode="json"),
        "claim": claim.model_dump(mode="json") if claim is not None else None,
        "customer": customer.model_dump(mode="json") if customer is not None else None,
        "value_cents": value_cents,
        "line_value_cents": line_value,
        "return_value_cents": return_value_cents,
        "eligibility": eligibility.model_dump(mode="json"),
        "fraud": fraud.model_dump(mode="json"),
        "grade": grade.model_dump(mode="json") if grade is not None else None,
        "thresholds": {
            "auto_approve_max_value_cents": policy.auto_approve.max_value_cents.for_currency(
                line.currency
            ),
            "fraud_review_threshold": policy.fraud.review_threshold,
            "min_grade_confidence": policy.category(line.category).review.min_confidence,
            "category_policy": policy.category(line.category).name,
        },
    }
    common: dict[str, Any] = {
        "stage": stage,
        "fraud_score": fraud.score,
        "policy_version": policy.version,
        "model_version": grade.model_version if grade is not None else None,
        "inputs": inputs,
    }

    if not eligibility.eligible:
        failed = eligibility.failed
        return Decision(
            outcome="ineligible",
            reason_codes=[r.reason_code for r in failed],
            messages=[r.message for r in failed],
            refund=None,
            **common,
        )

    refund = _quote(policy=policy, line=line, grade=grade, claim=claim)
    review = _review_reasons(
        policy=policy,
        stage=stage,
        line=line,
        fraud=fraud,
        grade=grade,
        claim=claim,
        value_cents=value_cents,
    )
    if review:
        codes = list(dict.fromkeys(code for code, _ in review))
        return Decision(
            outcome="needs_review",
            reason_codes=codes,
            messages=[message for _, message in review],
            refund=refund,
            **common,
        )

    notes = [f"fraud score {fraud.score:.2f}"]
    if fraud.signals:
        notes[0] += f" (signals: {', '.join(s.reason_code for s in fraud.signals)})"
    if stage == "claim":
        blockers = instant_refund_blockers(
            policy=policy,
            line=line,
            fraud=fraud,
            grade=grade,
            claim=claim,
            customer=customer,
            value_cents=value_cents,
        )
        if not blockers:
            return Decision(
                outcome="approve_refund",
                reason_codes=["eligible", "instant_refund"],
                messages=["eligible; the instant-refund rule holds", *notes],
                refund=refund,
                **common,
            )
        notes.append("no instant refund: " + "; ".join(blockers))
        return Decision(
            outcome="approve",
            reason_codes=["eligible", "auto_approved"],
            messages=["eligible and nothing needs a person", *notes],
            refund=refund,
            **common,
        )
    return Decision(
        outcome="approve",
        reason_codes=["eligible", "inspection_passed"],
        messages=["eligible; the inspection grade and signals need no person", *notes],
        refund=refund,
        **common,
    )
