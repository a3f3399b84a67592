"""End-to-end decision scenarios on real images: a photo reused across two customers and a
swapped item at the station both route to review with the reason codes that explain why."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from inspection.decisions.eligibility import check_eligibility
from inspection.decisions.engine import decide
from inspection.decisions.fraud import assess_fraud
from inspection.decisions.policy import Policy
from inspection.decisions.types import PhotoEvidence, PhotoMatch
from inspection.grading.intake import intake_photo, phash_distance
from inspection.grading.types import IntakePhoto
from inspection.grading.unit_match import compare_units
from inspection.settings import IntakeSettings
from tests.decisions import factories as f
from tests.decisions.product_photos import photograph, product_face


def _jpeg(image: np.ndarray, *, quality: int, scale: float = 1.0) -> bytes:
    if scale != 1.0:
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _intake(data: bytes, name: str) -> IntakePhoto:
    return intake_photo(
        data=data, content_type="image/jpeg", filename=name, settings=IntakeSettings()
    )


def _evidence(photo_id: int, photo: IntakePhoto, source: str = "customer") -> PhotoEvidence:
    return PhotoEvidence(
        photo_id=photo_id,
        source=source,  # type: ignore[arg-type]
        sha256=photo.facts.sha256,
        phash=photo.facts.phash,
        exif=f.camera_exif(),
        grade="resell",
    )


@pytest.fixture(scope="module")
def first_customer_photo() -> np.ndarray:
    return photograph(product_face(21), seed=1, angle_deg=8, tilt=0.1, background=(150, 120, 90))


def test_photo_reused_by_another_customer_routes_to_review(
    policy: Policy, first_customer_photo: np.ndarray
) -> None:
    # Customer 42 returned a jacket with this photo; customer 7 now sends the same picture,
    # downloaded and re-saved smaller at another JPEG quality.
    original = _intake(_jpeg(first_customer_photo, quality=92), "original.jpg")
    reused = _intake(_jpeg(first_customer_photo, quality=70, scale=0.6), "reused.jpg")
    own = _intake(
        _jpeg(photograph(product_face(22), seed=2, angle_deg=-6), quality=90), "honest.jpg"
    )
    assert original.facts.sha256 != reused.facts.sha256  # not a byte-identical copy
    distance = phash_distance(original.facts.phash, reused.facts.phash)
    honest_distance = phash_distance(original.facts.phash, own.facts.phash)
    assert distance <= policy.fraud.photo_reuse.max_phash_distance < honest_distance

    # What the returns domain finds when it searches other returns by perceptual hash.
    matches = [
        PhotoMatch(
            photo_id=2,
            matched_photo_id=1,
            matched_return_id=900,
            matched_customer_id=42,
            same_customer=False,
            phash_distance=distance,
        )
    ]
    line, claim = f.line(), f.claim()
    fraud = assess_fraud(
        policy=policy,
        inputs=f.fraud_inputs(photos=[_evidence(2, reused)], photo_matches=matches),
    )
    assert [s.reason_code for s in fraud.signals] == ["photo_reuse"]
    assert fraud.signals[0].evidence["matches"][0]["matched_customer_id"] == 42

    decision = decide(
        policy=policy,
        stage="claim",
        line=line,
        eligibility=check_eligibility(policy=policy, line=line, claim=claim),
        fraud=fraud,
        grade=f.grade(),
        claim=claim,
        customer=f.customer(),
    )
    assert decision.outcome == "needs_review"  # never ineligible on fraud alone
    assert "photo_reuse" in decision.reason_codes
    assert any("another customer's return(s) 900" in m for m in decision.messages)


def test_swapped_item_at_the_station_routes_to_review(
    policy: Policy, first_customer_photo: np.ndarray
) -> None:
    customer_photo = _intake(_jpeg(first_customer_photo, quality=90), "claim.jpg")
    # What arrived: a different product, photographed at the station.
    other = photograph(product_face(99), seed=3, angle_deg=-15, tilt=0.2, brightness=0.75)
    station_photo = _intake(_jpeg(other, quality=90), "station.jpg")

    unit = compare_units(
        customer_images=[customer_photo.image],
        station_images=[station_photo.image],
        customer_embeddings=None,
        station_embeddings=None,
        customer_defects=[],
        station_defects=["scratch"],
        customer_grade="resell",
        station_grade="refurbish",
    )
    assert not unit.same_unit_likely
    assert unit.damage_new_since_claim == ["scratch"]

    line, claim = f.line(), f.claim()
    fraud = assess_fraud(
        policy=policy,
        inputs=f.fraud_inputs(
            photos=[_evidence(1, customer_photo), _evidence(2, station_photo, "station")],
            unit_comparison=unit,
            item_grade="refurbish",
        ),
    )
    codes = [s.reason_code for s in fraud.signals]
    assert codes == ["swapped_item", "new_damage_after_claim"]

    decision = decide(
        policy=policy,
        stage="inspection",
        line=line,
        eligibility=check_eligibility(policy=policy, line=line, claim=claim),
        fraud=fraud,
        grade=f.grade(grade="refurbish", decided_by="model", confidence=0.9),
        claim=claim,
        customer=f.customer(),
    )
    assert decision.outcome == "needs_review"
    assert {"swapped_item", "new_damage_after_claim", "fraud_score_high"} <= set(
        decision.reason_codes
    )
    evidence = decision.inputs["fraud"]["signals"][0]["evidence"]
    assert evidence["local_feature_matches"] == unit.local_feature_matches


def test_same_unit_at_the_station_is_approved(
    policy: Policy, first_customer_photo: np.ndarray
) -> None:
    customer_photo = _intake(_jpeg(first_customer_photo, quality=90), "claim.jpg")
    again = photograph(product_face(21), seed=4, angle_deg=-25, tilt=0.3, brightness=0.7)
    station_photo = _intake(_jpeg(again, quality=85), "station.jpg")
    unit = compare_units(
        customer_images=[customer_photo.image],
        station_images=[station_photo.image],
        customer_embeddings=None,
        station_embeddings=None,
        customer_defects=[],
        station_defects=[],
        customer_grade="resell",
        station_grade="resell",
    )
    assert unit.same_unit_likely
    line, claim = f.line(), f.claim()
    fraud = assess_fraud(policy=policy, inputs=f.fraud_inputs(unit_comparison=unit))
    decision = decide(
        policy=policy,
        stage="inspection",
        line=line,
        eligibility=check_eligibility(policy=policy, line=line, claim=claim),
        fraud=fraud,
        grade=f.grade(),
        claim=claim,
        customer=f.customer(),
    )
    assert decision.outcome == "approve"
    assert decision.refund is not None and decision.refund.amount_cents == line.price_cents
