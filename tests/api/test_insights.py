"""GET /v1/stats and GET /v1/reviews over a small known dataset, expected values by hand."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from inspection.api.main import create_app
from tests.fixtures.database import INTEGRATION, QA, STATION, SettingsFactory
from tests.returns.test_qa import Seeder, probs


@pytest.fixture
def client(
    make_settings: SettingsFactory, database_url: str, tmp_path: Path
) -> Iterator[TestClient]:
    """The app on this test's database; these endpoints read rows, so no models are loaded."""
    settings = make_settings(database_url=database_url, models_dir=tmp_path / "no-models")
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def seed(client: TestClient) -> Seeder:
    return Seeder(client.app.state.engine)  # type: ignore[attr-defined]


def at(day: int, hour: int = 0, month: int = 1, year: int = 2026) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


JANUARY = {"since": "2026-01-01T00:00:00Z", "until": "2026-02-01T00:00:00Z"}


def seed_january(seed: Seeder) -> None:
    """Six returns; four opened in January 2026 (A, B, C, F), D before it, E after it."""
    a, ai = seed.return_(
        sku="PHONE", reason_code="defective", created_at=at(5, 10), final_grade="resell"
    )
    seed.decision(return_id=a, outcome="approve", created_at=at(5, 11))
    seed.refund(return_id=a, amount_cents=1000, paid_at=at(7, 10))  # 48 h
    seed.photo(
        return_id=a,
        item_id=ai,
        source="station",
        grade="resell",
        probabilities=probs(0.9, 0.05, 0.05),
        defects=["scratch", "scratch", "dent"],  # counted once per photo: scratch 1, dent 1
        created_at=at(6),
    )

    b, bi = seed.return_(
        sku="PHONE", reason_code="damaged_on_arrival", created_at=at(10), final_grade="refurbish"
    )
    seed.decision(return_id=b, outcome="needs_review", created_at=at(10, 1))
    seed.decision(return_id=b, outcome="approve", decided_by="qa", created_at=at(11))
    seed.refund(return_id=b, amount_cents=800, paid_at=at(11, 12))  # 36 h
    seed.photo(
        return_id=b,
        item_id=bi,
        source="customer",
        grade="refurbish",
        probabilities=probs(0.2, 0.7, 0.1),
        defects=["crack"],
        created_at=at(10),
    )
    station = seed.photo(
        return_id=b,
        item_id=bi,
        source="station",
        grade="refurbish",
        probabilities=probs(0.2, 0.7, 0.1),
        defects=["stain"],  # superseded by the regrade below: only the newest grade counts
        created_at=at(11),
    )
    seed.photo_grade(
        photo_id=station,
        return_id=b,
        item_id=bi,
        source="station",
        grade="refurbish",
        probabilities=probs(0.2, 0.7, 0.1),
        defects=["crack", "scratch"],
        created_at=at(11, 1),
    )

    c, ci = seed.return_(sku="SHOE", reason_code="wrong_size", created_at=at(20))
    seed.decision(return_id=c, outcome="ineligible", created_at=at(20, 1))
    seed.item_grade(return_id=c, item_id=ci, source="customer", grade="resell", created_at=at(20))
    seed.item_grade(
        return_id=c, item_id=ci, source="customer", grade="reject", created_at=at(20, 2)
    )
    seed.photo(
        return_id=c,
        item_id=ci,
        source="customer",
        grade="reject",
        probabilities=probs(0.1, 0.1, 0.8),
        defects=["tear"],
        created_at=at(20),
    )

    # D: opened in December, decided and refunded in January (counts for those numbers only).
    d, _ = seed.return_(
        sku="SHOE", reason_code="wrong_size", created_at=at(20, month=12, year=2025)
    )
    seed.decision(return_id=d, outcome="approve", created_at=at(2))
    seed.refund(return_id=d, amount_cents=500, paid_at=at(3))  # 14 days = 336 h

    # E: entirely in February.
    e, ei = seed.return_(sku="PHONE", reason_code="defective", created_at=at(5, month=2))
    seed.decision(return_id=e, outcome="needs_review", created_at=at(5, month=2))
    seed.photo(
        return_id=e,
        item_id=ei,
        source="customer",
        grade="reject",
        probabilities=probs(0.1, 0.1, 0.8),
        defects=["crack"],
        created_at=at(5, month=2),
    )

    seed.return_(sku="PHONE", reason_code="defective", created_at=at(25), final_grade="resell")


def test_stats_for_january_by_hand(client: TestClient, seed: Seeder) -> None:
    seed_january(seed)
    response = client.get("/v1/stats", params=JANUARY, headers=QA)
    assert response.status_code == 200, response.text
    stats = response.json()
    assert stats["returns"] == 4  # A, B, C, F
    # Decisions in January: A approve, B needs_review, B approve (qa), C ineligible, D approve.
    # Made by the engine and settling the return: A, C, D -> 3 of 5.
    assert stats["automation_rate"] == pytest.approx(0.6)
    # Returns decided in January: A, B, C, D; routed to review: B -> 1 of 4.
    assert stats["manual_review_rate"] == pytest.approx(0.25)
    # Refunds paid in January: A 48 h, B 36 h, D 336 h -> median 48.
    assert stats["refund_cycle_hours_p50"] == pytest.approx(48.0)
    # A resell (final), B refurbish (final), C reject (newest item grade), F resell (final).
    assert stats["grade_mix"] == {"refurbish": 1, "reject": 1, "resell": 2}
    assert stats["top_reasons_by_sku"] == [
        {"sku": "PHONE", "reason_code": "defective", "n": 2},
        {"sku": "PHONE", "reason_code": "damaged_on_arrival", "n": 1},
        {"sku": "SHOE", "reason_code": "wrong_size", "n": 1},
    ]
    assert stats["top_defects_by_sku"] == [
        {"sku": "PHONE", "defect_type": "crack", "n": 2},
        {"sku": "PHONE", "defect_type": "scratch", "n": 2},
        {"sku": "PHONE", "defect_type": "dent", "n": 1},
        {"sku": "SHOE", "defect_type": "tear", "n": 1},
    ]


def test_stats_without_a_period_counts_everything(client: TestClient, seed: Seeder) -> None:
    seed_january(seed)
    stats = client.get("/v1/stats", headers=STATION).json()
    assert stats["returns"] == 6
    # Six decisions, A, C, D automated; five returns decided, B and E routed to review.
    assert stats["automation_rate"] == pytest.approx(0.5)
    assert stats["manual_review_rate"] == pytest.approx(0.4)


def test_stats_on_an_empty_period_has_no_rates(client: TestClient) -> None:
    stats = client.get("/v1/stats", params=JANUARY, headers=QA).json()
    assert stats["returns"] == 0
    assert stats["automation_rate"] is None and stats["refund_cycle_hours_p50"] is None
    assert stats["grade_mix"] == {} and stats["top_defects_by_sku"] == []


def test_stats_rejects_a_backwards_period(client: TestClient) -> None:
    response = client.get(
        "/v1/stats",
        params={"since": "2026-02-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"},
        headers=QA,
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "bad_period"
    bad = client.get("/v1/stats", params={"since": "last tuesday"}, headers=QA)
    assert bad.status_code == 422 and "since" in bad.json()["error"]["message"]


def test_stats_needs_a_staff_key(client: TestClient) -> None:
    assert client.get("/v1/stats").status_code == 401


def test_review_queue_orders_by_value_times_risk(client: TestClient, seed: Seeder) -> None:
    signal = {
        "reason_code": "photo_reuse",
        "weight": 0.6,
        "message": "photo seen on another return",
        "evidence": {"matched_return_id": 99},
    }
    r1, i1 = seed.return_(price_cents=5000, quantity=2, status="needs_review")  # value 10000
    seed.decision(
        return_id=r1,
        outcome="needs_review",
        fraud_score=0.6,
        reason_codes=["photo_reuse"],
        signals=[signal],
    )
    seed.item_grade(return_id=r1, item_id=i1, source="customer", grade="resell", confidence=0.9)
    r2, i2 = seed.return_(price_cents=50_000, status="needs_review")
    seed.decision(return_id=r2, outcome="needs_review", reason_codes=["high_value"])
    seed.item_grade(return_id=r2, item_id=i2, source="customer", grade="resell", confidence=0.95)
    r3, i3 = seed.return_(price_cents=20_000, status="needs_review")
    seed.decision(
        return_id=r3, outcome="needs_review", fraud_score=0.2, reason_codes=["low_confidence"]
    )
    seed.item_grade(return_id=r3, item_id=i3, source="customer", grade="refurbish", confidence=0.5)
    r4, _ = seed.return_(price_cents=90_000, status="approved")  # not waiting: not listed
    seed.decision(return_id=r4, outcome="approve")

    response = client.get("/v1/reviews", headers=QA)
    assert response.status_code == 200, response.text
    page = response.json()
    assert page["count"] == 3
    rows = page["data"]
    # risk = 1 - (1 - fraud) * confidence, floored at 0.05; priority = value x risk.
    assert [r["return_id"] for r in rows] == [r3, r1, r2]
    assert [r["priority"] for r in rows] == pytest.approx([12_000.0, 6_400.0, 2_500.0])
    first_r1 = rows[1]
    assert first_r1["value_cents"] == 10_000 and first_r1["currency"] == "EUR"
    assert first_r1["rma"] == f"RMA-{r1:06d}"
    assert first_r1["reason_codes"] == ["photo_reuse"]
    assert first_r1["fraud_signals"][0]["evidence"] == {"matched_return_id": 99}
    assert first_r1["grade"] == "resell" and first_r1["grade_confidence"] == pytest.approx(0.9)
    assert client.get("/v1/reviews", headers=STATION).status_code == 200
    forbidden = client.get("/v1/reviews", headers=INTEGRATION)
    assert forbidden.status_code == 403 and forbidden.json()["error"]["code"] == "forbidden"
