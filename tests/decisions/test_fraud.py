"""Fraud signals, table-driven: each fires on its evidence (and not just short of it), and the
combined score stays in 0..1 and only grows with more evidence."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from inspection.decisions.fraud import assess_fraud, combine_weights
from inspection.decisions.policy import Policy
from inspection.decisions.types import PhotoMatch, UnitComparison
from tests.decisions import factories as f


def _match(**over: Any) -> PhotoMatch:
    base: dict[str, Any] = {
        "photo_id": 1,
        "matched_photo_id": 99,
        "matched_return_id": 500,
        "matched_customer_id": 42,
        "same_customer": False,
        "phash_distance": 2,
        "embedding_similarity": None,
    }
    return PhotoMatch(**{**base, **over})


def _unit(**over: Any) -> UnitComparison:
    base: dict[str, Any] = {
        "embedding_similarity": 0.95,
        "local_feature_matches": 80,
        "same_unit_likely": True,
        "customer_grade": "resell",
        "station_grade": "resell",
    }
    return UnitComparison(**{**base, **over})


# (case id, FraudInputs overrides, expected signal or None, evidence/message expectations)
CASES: list[tuple[str, dict[str, Any], str | None, dict[str, Any]]] = [
    ("clean", {}, None, {}),
    # photo reuse
    (
        "reuse-phash",
        {"photo_matches": [_match(phash_distance=6)]},
        "photo_reuse",
        {"message": "another customer's return(s) 500"},
    ),
    ("reuse-phash-too-far", {"photo_matches": [_match(phash_distance=7)]}, None, {}),
    (
        "reuse-embedding",
        {"photo_matches": [_match(phash_distance=30, embedding_similarity=0.98)]},
        "photo_reuse",
        {},
    ),
    (
        "reuse-embedding-low",
        {"photo_matches": [_match(phash_distance=30, embedding_similarity=0.9)]},
        None,
        {},
    ),
    (
        "reuse-own-return",
        {"photo_matches": [_match(same_customer=True, matched_customer_id=7)]},
        "photo_reuse_same_customer",
        {"message": "the customer's own earlier return(s) 500"},
    ),
    # EXIF: capture time vs delivery (naive EXIF is Berlin wall clock; 14 h tolerance)
    (
        "exif-days-before-delivery",
        {"photos": [f.photo(exif=f.camera_exif(captured_at=datetime(2026, 2, 20, 10, 0)))]},
        "exif_before_delivery",
        {"message": "taken before delivery"},
    ),
    (
        "exif-within-clock-tolerance",
        # Delivery 14:00 UTC = 15:00 Berlin; 08:00 Berlin is 7 h earlier, inside the 14 h tolerance.
        {"photos": [f.photo(exif=f.camera_exif(captured_at=datetime(2026, 3, 3, 8, 0)))]},
        None,
        {},
    ),
    (
        "exif-aware-time-before-delivery",
        {"photos": [f.photo(exif=f.camera_exif(captured_at=f.DELIVERED - timedelta(hours=15)))]},
        "exif_before_delivery",
        {},
    ),
    (
        "exif-before-order-when-undelivered",
        {
            "order": f.order(delivered_at=None),
            "photos": [f.photo(exif=f.camera_exif(captured_at=datetime(2026, 2, 1, 12, 0)))],
        },
        "exif_before_delivery",
        {"message": "taken before the order"},
    ),
    (
        "exif-station-photo-ignored",
        {
            "photos": [
                f.photo(source="station", exif=f.camera_exif(captured_at=datetime(2020, 1, 1)))
            ]
        },
        None,
        {},
    ),
    (
        "exif-photoshop",
        {"photos": [f.photo(exif=f.camera_exif(software="Adobe Photoshop 25.1 (Macintosh)"))]},
        "exif_edited",
        {"message": "Adobe Photoshop"},
    ),
    (
        "exif-gimp",
        {"photos": [f.photo(exif=f.camera_exif(software="GIMP 2.10.36"))]},
        "exif_edited",
        {},
    ),
    (
        "exif-snapseed",
        {"photos": [f.photo(exif=f.camera_exif(software="Snapseed 2.0"))]},
        "exif_edited",
        {},
    ),
    (
        "exif-phone-firmware",
        {"photos": [f.photo(exif=f.camera_exif(software="HDR+ 1.0.5"))]},
        None,
        {},
    ),
    (
        "exif-missing",
        {"photos": [f.photo(exif=f.ExifFacts()), f.photo(2)]},
        "exif_missing",
        {"message": "1 of 2 customer photo(s)"},
    ),
    # customer history
    (
        "return-rate",
        {"customer": f.customer(orders_count=10, returns_count=5)},
        "high_return_rate",
        {"message": "returned 5 of 10 orders (50%)"},
    ),
    ("return-rate-below", {"customer": f.customer(orders_count=10, returns_count=4)}, None, {}),
    (
        "return-rate-too-few-orders",
        {"customer": f.customer(orders_count=3, returns_count=3)},
        None,
        {},
    ),
    (
        "frequent-30d",
        {"customer": f.customer(returns_last_30d=3, returns_last_90d=3)},
        "frequent_returns",
        {},
    ),
    (
        "frequent-90d",
        {"customer": f.customer(returns_last_30d=0, returns_last_90d=6)},
        "frequent_returns",
        {},
    ),
    ("frequent-below", {"customer": f.customer(returns_last_30d=2, returns_last_90d=5)}, None, {}),
    ("prior-flags", {"customer": f.customer(prior_fraud_flags=1)}, "prior_fraud_flags", {}),
    (
        "new-account",
        {"customer": f.customer(account_created_at=f.CLAIMED - timedelta(days=13))},
        "new_account",
        {"message": "13 days old"},
    ),
    (
        "account-14-days",
        {"customer": f.customer(account_created_at=f.CLAIMED - timedelta(days=14))},
        None,
        {},
    ),
    # order
    ("high-value", {"order": f.order(order_value_cents=50_000)}, "high_value", {}),
    ("below-high-value", {"order": f.order(order_value_cents=49_999)}, None, {}),
    (
        "country-mismatch",
        {"order": f.order(shipping_country="DE", billing_country="NG")},
        "address_mismatch",
        {"message": "shipped to DE but billed in NG"},
    ),
    (
        "country-case-insensitive",
        {"order": f.order(shipping_country="de", billing_country="DE ")},
        None,
        {},
    ),
    ("country-unknown", {"order": f.order(billing_country=None)}, None, {}),
    # wardrobing: expedited + quick change-of-mind return of apparel/shoes in resell condition
    (
        "wardrobing",
        {
            "order": f.order(expedited_shipping=True),
            "claim": f.claim(requested_at=f.DELIVERED + timedelta(days=2)),
        },
        "wardrobing",
        {"message": "returned 2 day(s) after delivery"},
    ),
    (
        "wardrobing-shoes-day-4",
        {
            "order": f.order(expedited_shipping=True),
            "category": "shoes",
            "claim": f.claim(requested_at=f.DELIVERED + timedelta(days=4)),
        },
        "wardrobing",
        {},
    ),
    (
        "wardrobing-day-5",
        {
            "order": f.order(expedited_shipping=True),
            "claim": f.claim(requested_at=f.DELIVERED + timedelta(days=5)),
        },
        None,
        {},
    ),
    (
        "wardrobing-standard-shipping",
        {"claim": f.claim(requested_at=f.DELIVERED + timedelta(days=1))},
        None,
        {},
    ),
    (
        "wardrobing-electronics",
        {
            "order": f.order(expedited_shipping=True),
            "category": "electronics",
            "claim": f.claim(requested_at=f.DELIVERED + timedelta(days=1)),
        },
        None,
        {},
    ),
    (
        "wardrobing-refurbish-condition",
        {
            "order": f.order(expedited_shipping=True),
            "item_grade": "refurbish",
            "claim": f.claim(requested_at=f.DELIVERED + timedelta(days=1)),
        },
        None,
        {},
    ),
    (
        "wardrobing-faulty-reason",
        {
            "order": f.order(expedited_shipping=True),
            "claim": f.claim(reason_code="defective", requested_at=f.DELIVERED + timedelta(days=1)),
            "item_grade_confidence": 0.5,  # keeps reason_grade_mismatch out of this case
        },
        None,
        {},
    ),
    # reason vs grade
    (
        "damaged-but-resell",
        {"claim": f.claim(reason_code="damaged_on_arrival"), "item_grade_confidence": 0.9},
        "reason_grade_mismatch",
        {"message": "says damaged_on_arrival but the photos grade resell with confidence 0.90"},
    ),
    (
        "defective-but-resell",
        {"claim": f.claim(reason_code="defective"), "item_grade_confidence": 0.85},
        "reason_grade_mismatch",
        {},
    ),
    (
        "damaged-low-confidence",
        {"claim": f.claim(reason_code="damaged_on_arrival"), "item_grade_confidence": 0.84},
        None,
        {},
    ),
    (
        "damaged-unknown-confidence",
        {"claim": f.claim(reason_code="damaged_on_arrival"), "item_grade_confidence": None},
        None,
        {},
    ),
    (
        "damaged-graded-reject",
        {"claim": f.claim(reason_code="damaged_on_arrival"), "item_grade": "reject"},
        None,
        {},
    ),
    ("wrong-item-not-checked", {"claim": f.claim(reason_code="wrong_item")}, None, {}),
    # customer photos vs station photos
    (
        "swapped",
        {
            "unit_comparison": _unit(
                same_unit_likely=False, local_feature_matches=3, embedding_similarity=0.2
            )
        },
        "swapped_item",
        {"message": "3 matching keypoints, embedding similarity 0.20"},
    ),
    ("same-unit", {"unit_comparison": _unit()}, None, {}),
    (
        "new-damage",
        {
            "unit_comparison": _unit(
                damage_present_at_claim=["scratch"],
                damage_new_since_claim=["crack"],
                station_grade="reject",
            )
        },
        "new_damage_after_claim",
        {"message": "crack"},
    ),
    (
        "worse-at-station",
        {"unit_comparison": _unit(customer_grade="resell", station_grade="refurbish")},
        "condition_worse_at_station",
        {},
    ),
    (
        "better-at-station",
        {"unit_comparison": _unit(customer_grade="refurbish", station_grade="resell")},
        None,
        {},
    ),
    # anomaly score
    ("anomaly", {"anomaly_score": 0.57}, "anomaly", {}),
    ("anomaly-below", {"anomaly_score": 0.5699}, None, {}),
]


@pytest.mark.parametrize(("case", "over", "expected", "checks"), CASES, ids=[c[0] for c in CASES])
def test_signal(
    policy: Policy, case: str, over: dict[str, Any], expected: str | None, checks: dict[str, Any]
) -> None:
    result = assess_fraud(policy=policy, inputs=f.fraud_inputs(**over))
    codes = [s.reason_code for s in result.signals]
    if expected is None:
        assert codes == [], case
        assert result.score == 0.0
        return
    assert codes == [expected], case
    signal = result.signals[0]
    assert signal.weight == policy.fraud.weights[expected]
    assert result.score == pytest.approx(signal.weight)
    assert signal.message
    assert signal.evidence, "every signal carries its evidence"
    if "message" in checks:
        assert checks["message"] in signal.message


def test_reuse_evidence_lists_each_match(policy: Policy) -> None:
    matches = [
        _match(photo_id=1, matched_return_id=500),
        _match(photo_id=2, matched_return_id=501, matched_photo_id=77),
    ]
    result = assess_fraud(policy=policy, inputs=f.fraud_inputs(photo_matches=matches))
    (signal,) = result.signals
    assert [m["matched_return_id"] for m in signal.evidence["matches"]] == [500, 501]
    assert signal.evidence["max_phash_distance"] == policy.fraud.photo_reuse.max_phash_distance


def test_signals_combine_as_noisy_or(policy: Policy) -> None:
    inputs = f.fraud_inputs(
        photo_matches=[_match()],
        customer=f.customer(
            prior_fraud_flags=2, account_created_at=datetime(2026, 3, 7, tzinfo=UTC)
        ),
    )
    result = assess_fraud(policy=policy, inputs=inputs)
    codes = {s.reason_code for s in result.signals}
    assert codes == {"photo_reuse", "prior_fraud_flags", "new_account"}
    w = policy.fraud.weights
    expected = 1 - (1 - w["photo_reuse"]) * (1 - w["prior_fraud_flags"]) * (1 - w["new_account"])
    assert result.score == pytest.approx(expected)
    assert 0 <= result.score <= 1


def test_evidence_is_json_ready(policy: Policy) -> None:
    inputs = f.fraud_inputs(
        photos=[f.photo(exif=f.camera_exif(captured_at=datetime(2026, 2, 1), software="GIMP"))],
        unit_comparison=_unit(same_unit_likely=False, damage_new_since_claim=["dent"]),
        photo_matches=[_match()],
    )
    result = assess_fraud(policy=policy, inputs=inputs)
    assert len(result.signals) == 5
    result.model_dump_json()  # raises if any evidence is not JSON-able


@given(
    st.lists(st.floats(min_value=0, max_value=1), max_size=20), st.floats(min_value=0, max_value=1)
)
def test_score_bounded_and_monotone(weights: list[float], extra: float) -> None:
    score = combine_weights(weights)
    assert 0.0 <= score <= 1.0
    assert combine_weights([*weights, extra]) >= score - 1e-9
