"""Instant refunds: under a policy whose instant-refund rule holds, the refund is paid at claim
time (from label_sent), the parcel still has to arrive and be inspected, and it pays once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from inspection.api.main import create_app
from inspection.settings import PolicySettings, Settings
from tests.fixtures.database import (
    POLICY_FILE,
    STATION,
    bearer,
    create_order,
    open_return,
    upload_photos,
)
from tests.fixtures.images import make_photo_bytes


def _lenient_policy(tmp_path: Path) -> Path:
    """The bundled policy with the instant-refund rule and review gates opened wide."""
    policy: dict[str, Any] = yaml.safe_load(POLICY_FILE.read_text())
    policy["version"] = "test-instant"
    policy["instant_refund"].update(
        {
            "min_account_age_days": 0,
            "min_orders": 0,
            "max_returns_last_90d": 100,
            "max_return_rate": 1.0,
            "max_prior_fraud_flags": 100,
            "min_grade_confidence": 0.0,
            "allowed_grades": ["resell", "refurbish", "reject"],
            "max_fraud_score": 1.0,
        }
    )
    policy["fraud"]["review_threshold"] = 1.0
    policy["fraud"]["always_review"] = []
    for name, category in policy["categories"].items():
        category["review"] = {
            "min_confidence": 0.0,
            "max_grade_spread": 2,
            "review_on_poor_quality": False,
        }
        if name == "default":
            category["change_of_mind_grades"] = ["resell", "refurbish", "reject"]
    path = tmp_path / "lenient-policy.yaml"
    path.write_text(yaml.safe_dump(policy))
    return path


@pytest.fixture
def lenient_client(settings: Settings, tmp_path: Path) -> Iterator[TestClient]:
    settings.policy = PolicySettings(path=_lenient_policy(tmp_path))
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def test_instant_refund_pays_before_receipt_and_the_item_still_comes_back(
    lenient_client: TestClient,
) -> None:
    client = lenient_client
    order = create_order(client, category="hard_goods", price_cents=2500)
    ret, token = open_return(client, order, reason_code="damaged_on_arrival")
    photo = upload_photos(
        client, ret["id"], [make_photo_bytes(seed=41)], source="customer", headers=bearer(token)
    )
    assert photo.status_code == 201, photo.text

    submitted = client.post(f"/v1/returns/{ret['id']}/submit", headers=bearer(token)).json()

    assert submitted["decision"]["outcome"] == "approve_refund", submitted["decision"]
    assert submitted["status"] == "label_sent"
    assert "refund" in submitted["allowed_actions"]
    paid = client.post(f"/v1/returns/{ret['id']}/refund", headers=STATION)
    assert paid.status_code == 201, paid.text
    assert paid.json()["status"] == "paid"
    assert paid.json()["amount_cents"] == submitted["decision"]["refund"]["amount_cents"]
    state = client.get(f"/v1/returns/{ret['id']}", headers=STATION).json()
    assert state["status"] == "label_sent" and "refund" not in state["allowed_actions"]

    upload_photos(client, ret["id"], [make_photo_bytes(seed=42)], source="station", headers=STATION)
    assert client.post(f"/v1/returns/{ret['id']}/receive", headers=STATION).status_code == 200
    inspected = client.post(
        f"/v1/returns/{ret['id']}/inspection", json={"confirm": True}, headers=STATION
    )
    assert inspected.status_code == 200, inspected.text
    assert "close" in inspected.json()["allowed_actions"]
    # A grade the inspector confirmed is not sent back to review for the model's confidence.
    verdict = inspected.json()["decision"]
    assert "low_confidence" not in verdict["reason_codes"]
    assert verdict["decided_by"] != "model"
    again = client.post(f"/v1/returns/{ret['id']}/refund", headers=STATION)
    assert again.status_code == 200 and again.json()["id"] == paid.json()["id"]
    closed = client.post(f"/v1/returns/{ret['id']}/close", headers=STATION)
    assert closed.status_code == 200 and closed.json()["status"] == "closed"
