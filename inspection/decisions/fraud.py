"""Fraud signals: each a reason code with the evidence behind it, combined into a 0..1 score.

The score is never a verdict. The engine only routes a high score (or an `always_review` signal)
to a person, who sees every signal's message and evidence.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from inspection.decisions.eligibility import as_aware, local_date
from inspection.decisions.policy import Policy
from inspection.decisions.types import FraudAssessment, FraudInputs, FraudSignal
from inspection.grading.types import GRADES

# Change-of-mind reasons: the customer says nothing is wrong with the item.
_CHANGE_OF_MIND = ("no_longer_needed", "wrong_size", "other")


def combine_weights(weights: list[float]) -> float:
    """Noisy-OR of independent evidence: 1 - prod(1 - w), always within 0..1."""
    keep = 1.0
    for weight in weights:
        keep *= 1.0 - min(max(weight, 0.0), 1.0)
    return round(1.0 - keep, 6)


def _signal(policy: Policy, code: str, message: str, **evidence: object) -> FraudSignal:
    return FraudSignal(
        reason_code=code, weight=policy.fraud.weights[code], message=message, evidence=evidence
    )


def _exif_time(moment: datetime, policy: Policy) -> datetime:
    # EXIF DateTimeOriginal has no zone: read it as wall-clock time in the retailer's zone.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=policy.zone)


def _photo_reuse(policy: Policy, inputs: FraudInputs) -> list[FraudSignal]:
    rules = policy.fraud.photo_reuse
    hits = [
        m
        for m in inputs.photo_matches
        if m.phash_distance <= rules.max_phash_distance
        or (
            m.embedding_similarity is not None
            and m.embedding_similarity >= rules.min_embedding_similarity
        )
    ]
    out: list[FraudSignal] = []
    for same_customer, code in ((False, "photo_reuse"), (True, "photo_reuse_same_customer")):
        group = [m for m in hits if m.same_customer == same_customer]
        if not group:
            continue
        returns = sorted({m.matched_return_id for m in group})
        whose = "the customer's own earlier" if same_customer else "another customer's"
        out.append(
            _signal(
                policy,
                code,
                f"{len(group)} photo(s) match photos on {whose} return(s) "
                f"{', '.join(str(r) for r in returns)}",
                matches=[
                    {
                        "photo_id": m.photo_id,
                        "matched_photo_id": m.matched_photo_id,
                        "matched_return_id": m.matched_return_id,
                        "matched_customer_id": m.matched_customer_id,
                        "phash_distance": m.phash_distance,
                        "embedding_similarity": m.embedding_similarity,
                    }
                    for m in group
                ],
                max_phash_distance=rules.max_phash_distance,
                min_embedding_similarity=rules.min_embedding_similarity,
            )
        )
    return out


def _exif_before_delivery(policy: Policy, inputs: FraudInputs) -> list[FraudSignal]:
    reference = inputs.order.delivered_at or inputs.order.ordered_at
    what = "delivery" if inputs.order.delivered_at is not None else "the order"
    tolerance = timedelta(hours=policy.fraud.exif.clock_tolerance_hours)
    early = [
        p
        for p in inputs.photos
        if p.source == "customer"
        and p.exif.captured_at is not None
        and _exif_time(p.exif.captured_at, policy) < as_aware(reference) - tolerance
    ]
    if not early:
        return []
    first = min(_exif_time(p.exif.captured_at, policy) for p in early if p.exif.captured_at)
    return [
        _signal(
            policy,
            "exif_before_delivery",
            f"{len(early)} photo(s) were taken before {what} "
            f"(earliest {first.isoformat()}, {what} {as_aware(reference).isoformat()})",
            photo_ids=[p.photo_id for p in early],
            captured_at=[str(p.exif.captured_at) for p in early],
            reference_at=as_aware(reference).isoformat(),
            tolerance_hours=policy.fraud.exif.clock_tolerance_hours,
        )
    ]


def _exif_edited(policy: Policy, inputs: FraudInputs) -> list[FraudSignal]:
    markers = policy.fraud.exif.editing_software
    edited = [
        (p.photo_id, p.exif.software)
        for p in inputs.photos
        if p.source == "customer"
        and p.exif.software
        and any(m in p.exif.software.lower() for m in markers)
    ]
    if not edited:
        return []
    tools = sorted({str(s) for _, s in edited})
    return [
        _signal(
            policy,
            "exif_edited",
            f"{len(edited)} photo(s) were saved by editing software ({', '.join(tools)})",
            photo_ids=[pid for pid, _ in edited],
            software=tools,
        )
    ]


def _exif_missing(policy: Policy, inputs: FraudInputs) -> list[FraudSignal]:
    if not policy.fraud.exif.expect_camera_photos:
        return []
    customer = [p for p in inputs.photos if p.source == "customer"]
    bare = [p.photo_id for p in customer if not p.exif.has_exif]
    if not bare:
        return []
    return [
        _signal(
            policy,
            "exif_missing",
            f"{len(bare)} of {len(customer)} customer photo(s) carry no camera EXIF data",
            photo_ids=bare,
        )
    ]


def _history(policy: Policy, inputs: FraudInputs) -> list[FraudSignal]:
    rules = policy.fraud.history
    who = inputs.customer
    out: list[FraudSignal] = []
    if who.orders_count >= rules.min_orders_for_rate:
        rate = who.returns_count / who.orders_count
        if rate >= rules.high_return_rate:
            out.append(
                _signal(
                    policy,
                    "high_return_rate",
                    f"returned {who.returns_count} of {who.orders_count} orders ({rate:.0%}); "
                    f"the policy flags {rules.high_return_rate:.0%} or more",
                    returns_count=who.returns_count,
                    orders_count=who.orders_count,
                    return_rate=round(rate, 4),
                )
            )
    if (
        who.returns_last_30d >= rules.frequent_returns_30d
        or who.returns_last_90d >= rules.frequent_returns_90d
    ):
        out.append(
            _signal(
                policy,
                "frequent_returns",
                f"{who.returns_last_30d} returns in the last 30 days and {who.returns_last_90d} in "
                f"the last 90 (flagged at {rules.frequent_returns_30d} / "
                f"{rules.frequent_returns_90d})",
                returns_last_30d=who.returns_last_30d,
                returns_last_90d=who.returns_last_90d,
            )
        )
    if who.prior_fraud_flags > 0:
        out.append(
            _signal(
                policy,
                "prior_fraud_flags",
                f"the customer has {who.prior_fraud_flags} earlier fraud flag(s)",
                prior_fraud_flags=who.prior_fraud_flags,
            )
        )
    age_days = (as_aware(inputs.claim.requested_at) - as_aware(who.account_created_at)).days
    if age_days < rules.new_account_days:
        out.append(
            _signal(
                policy,
                "new_account",
                f"the account is {max(age_days, 0)} days old "
                f"(new below {rules.new_account_days} days)",
                account_age_days=age_days,
            )
        )
    return out


def _order(policy: Policy, inputs: FraudInputs) -> list[FraudSignal]:
    order = inputs.order
    out: list[FraudSignal] = []
    limit = policy.fraud.order.high_value_cents.for_currency(order.currency)
    if order.order_value_cents >= limit:
        out.append(
            _signal(
                policy,
                "high_value",
                f"order value {order.order_value_cents} {order.currency} cents is at or above "
                f"{limit}",
                order_value_cents=order.order_value_cents,
                currency=order.currency,
                limit_cents=limit,
            )
        )
    ship, bill = order.shipping_country, order.billing_country
    if ship and bill and ship.strip().upper() != bill.strip().upper():
        out.append(
            _signal(
                policy,
                "address_mismatch",
                f"shipped to {ship.upper()} but billed in {bill.upper()}",
                shipping_country=ship,
                billing_country=bill,
            )
        )
    return out


def _wardrobing(policy: Policy, inputs: FraudInputs) -> list[FraudSignal]:
    rules = policy.fraud.wardrobing
    order = inputs.order
    if (
        not order.expedited_shipping
        or order.delivered_at is None
        or inputs.category not in rules.categories
        or inputs.claim.reason_code not in _CHANGE_OF_MIND
        or inputs.item_grade != "resell"
    ):
        return []
    zone = policy.zone
    days = (local_date(inputs.claim.requested_at, zone) - local_date(order.delivered_at, zone)).days
    if days > rules.max_days_after_delivery:
        return []
    return [
        _signal(
            policy,
            "wardrobing",
            f"{inputs.category} bought with expedited shipping, returned {max(days, 0)} day(s) "
            f"after delivery in resell condition ({inputs.claim.reason_code})",
            category=inputs.category,
            days_after_delivery=days,
            reason_code=inputs.claim.reason_code,
        )
    ]


def _reason_vs_grade(policy: Policy, inputs: FraudInputs) -> list[FraudSignal]:
    rules = policy.fraud.reason_grade_mismatch
    confidence = inputs.item_grade_confidence
    if (
        inputs.claim.reason_code not in rules.reasons
        or inputs.item_grade != "resell"
        or confidence is None
        or confidence < rules.min_confidence
    ):
        return []
    return [
        _signal(
            policy,
            "reason_grade_mismatch",
            f"the customer says {inputs.claim.reason_code} but the photos grade resell "
            f"with confidence {confidence:.2f}",
            reason_code=inputs.claim.reason_code,
            grade=inputs.item_grade,
            confidence=confidence,
        )
    ]


def _unit_comparison(policy: Policy, inputs: FraudInputs) -> list[FraudSignal]:
    unit = inputs.unit_comparison
    if unit is None:
        return []
    out: list[FraudSignal] = []
    if not unit.same_unit_likely:
        similarity = (
            f"embedding similarity {unit.embedding_similarity:.2f}"
            if unit.embedding_similarity is not None
            else "no embeddings"
        )
        out.append(
            _signal(
                policy,
                "swapped_item",
                "the station photos do not show the unit the customer photographed "
                f"({unit.local_feature_matches} matching keypoints, {similarity})",
                local_feature_matches=unit.local_feature_matches,
                embedding_similarity=unit.embedding_similarity,
            )
        )
    if unit.damage_new_since_claim:
        out.append(
            _signal(
                policy,
                "new_damage_after_claim",
                "the station found damage the customer's photos did not show: "
                + ", ".join(unit.damage_new_since_claim),
                new_damage=unit.damage_new_since_claim,
                damage_at_claim=unit.damage_present_at_claim,
            )
        )
    elif (
        unit.customer_grade is not None
        and unit.station_grade is not None
        and GRADES.index(unit.station_grade) > GRADES.index(unit.customer_grade)
    ):
        out.append(
            _signal(
                policy,
                "condition_worse_at_station",
                f"graded {unit.customer_grade} from the customer's photos but "
                f"{unit.station_grade} at the station",
                customer_grade=unit.customer_grade,
                station_grade=unit.station_grade,
            )
        )
    return out


def _anomaly(policy: Policy, inputs: FraudInputs) -> list[FraudSignal]:
    score = inputs.anomaly_score
    if score is None or score < policy.fraud.anomaly_threshold:
        return []
    return [
        _signal(
            policy,
            "anomaly",
            f"the order and history look unusual (anomaly score {score:.2f}, flagged at "
            f"{policy.fraud.anomaly_threshold:.2f})",
            anomaly_score=score,
            threshold=policy.fraud.anomaly_threshold,
        )
    ]


_CHECKS: tuple[Callable[[Policy, FraudInputs], list[FraudSignal]], ...] = (
    _photo_reuse,
    _exif_before_delivery,
    _exif_edited,
    _exif_missing,
    _history,
    _order,
    _wardrobing,
    _reason_vs_grade,
    _unit_comparison,
    _anomaly,
)


def assess_fraud(*, policy: Policy, inputs: FraudInputs) -> FraudAssessment:
    """Raises every fraud signal the inputs support and combines their weights into a score."""
    signals = [signal for check in _CHECKS for signal in check(policy, inputs)]
    return FraudAssessment(score=combine_weights([s.weight for s in signals]), signals=signals)
