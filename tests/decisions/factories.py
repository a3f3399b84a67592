"""Builders of decision inputs with sensible defaults; each test overrides only what it checks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from inspection.decisions.types import (
    CustomerHistory,
    FraudAssessment,
    FraudInputs,
    FraudSignal,
    GradeFacts,
    OrderContext,
    OrderLineFacts,
    PhotoEvidence,
    ReturnClaim,
)
from inspection.grading.types import ExifFacts

ORDERED = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
DELIVERED = datetime(2026, 3, 3, 14, 0, tzinfo=UTC)
CLAIMED = DELIVERED + timedelta(days=5)


def line(**over: Any) -> OrderLineFacts:
    base: dict[str, Any] = {
        "sku": "SKU-1",
        "category": "apparel",
        "price_cents": 4_999,
        "currency": "EUR",
        "quantity": 1,
        "final_sale": False,
        "ordered_at": ORDERED,
        "delivered_at": DELIVERED,
    }
    return OrderLineFacts(**{**base, **over})


def claim(**over: Any) -> ReturnClaim:
    base: dict[str, Any] = {"reason_code": "no_longer_needed", "requested_at": CLAIMED}
    return ReturnClaim(**{**base, **over})


def customer(**over: Any) -> CustomerHistory:
    """A customer in good standing: old account, many orders, few returns."""
    base: dict[str, Any] = {
        "customer_id": 7,
        "account_created_at": datetime(2024, 1, 1, tzinfo=UTC),
        "orders_count": 20,
        "returns_count": 2,
        "returns_last_30d": 0,
        "returns_last_90d": 1,
        "prior_fraud_flags": 0,
    }
    return CustomerHistory(**{**base, **over})


def order(**over: Any) -> OrderContext:
    base: dict[str, Any] = {
        "order_value_cents": 4_999,
        "currency": "EUR",
        "shipping_country": "DE",
        "billing_country": "DE",
        "expedited_shipping": False,
        "ordered_at": ORDERED,
        "delivered_at": DELIVERED,
    }
    return OrderContext(**{**base, **over})


def camera_exif(**over: Any) -> ExifFacts:
    base: dict[str, Any] = {
        "has_exif": True,
        "captured_at": datetime(2026, 3, 7, 18, 0),  # local wall-clock time, as EXIF stores it
        "camera_make": "Apple",
        "camera_model": "iPhone 15",
        "software": "17.4.1",
    }
    return ExifFacts(**{**base, **over})


def photo(photo_id: int = 1, **over: Any) -> PhotoEvidence:
    base: dict[str, Any] = {
        "photo_id": photo_id,
        "source": "customer",
        "sha256": f"{photo_id:064x}",
        "phash": "8f3c0a0a1e1e3c3c",
        "exif": camera_exif(),
        "grade": "resell",
    }
    return PhotoEvidence(**{**base, **over})


def fraud_inputs(**over: Any) -> FraudInputs:
    base: dict[str, Any] = {
        "claim": claim(),
        "order": order(),
        "customer": customer(),
        "photos": [photo()],
        "category": "apparel",
        "item_grade": "resell",
        "item_grade_confidence": 0.9,
    }
    return FraudInputs(**{**base, **over})


def grade(**over: Any) -> GradeFacts:
    base: dict[str, Any] = {"grade": "resell", "confidence": 0.93, "model_version": "grader-1.0"}
    return GradeFacts(**{**base, **over})


def fraud(*codes: str, score: float | None = None, weight: float = 0.3) -> FraudAssessment:
    signals = [FraudSignal(reason_code=c, weight=weight, message=f"{c} seen") for c in codes]
    if score is None:
        keep = 1.0
        for s in signals:
            keep *= 1 - s.weight
        score = 1 - keep
    return FraudAssessment(score=score, signals=signals)
