"""Every lifecycle step asked for in the wrong status answers 409 with the current status,
and changes nothing."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.fixtures.database import (
    ADMIN,
    STATION,
    bearer,
    return_in_status,
    upload_photos,
)
from tests.fixtures.images import make_photo_bytes

# (status the return is in, request that is not allowed there)
ILLEGAL = [
    ("return_requested", "receive"),
    ("return_requested", "inspect"),
    ("return_requested", "refund"),
    ("return_requested", "close"),
    ("return_requested", "decide"),
    ("return_requested", "station_photos"),
    ("label_sent", "submit"),
    ("label_sent", "inspect"),
    ("label_sent", "refund"),
    ("label_sent", "close"),
    ("label_sent", "decide"),
    ("label_sent", "customer_photos"),
    ("item_received", "receive"),
    ("item_received", "refund"),
    ("item_received", "submit"),
    ("inspected", "receive"),
    ("inspected", "inspect"),
    ("inspected", "station_photos"),
    ("refunded", "inspect"),
    ("refunded", "submit"),
    ("closed", "refund_new_key"),
    ("closed", "close"),
    ("closed", "receive"),
]


def _attempt(client: TestClient, action: str, rid: int, token: str):  # type: ignore[no-untyped-def]
    if action == "submit":
        return client.post(f"/v1/returns/{rid}/submit", headers=bearer(token))
    if action == "receive":
        return client.post(f"/v1/returns/{rid}/receive", headers=STATION)
    if action == "inspect":
        return client.post(f"/v1/returns/{rid}/inspection", json={"confirm": True}, headers=STATION)
    if action == "refund":
        return client.post(f"/v1/returns/{rid}/refund", headers=STATION)
    if action == "refund_new_key":
        return client.post(
            f"/v1/returns/{rid}/refund", headers={**STATION, "Idempotency-Key": "another-key"}
        )
    if action == "close":
        return client.post(f"/v1/returns/{rid}/close", headers=STATION)
    if action == "decide":
        return client.post(
            f"/v1/returns/{rid}/decision",
            json={"outcome": "approve", "reason": "looks fine"},
            headers=ADMIN,
        )
    if action == "station_photos":
        return upload_photos(
            client, rid, [make_photo_bytes(seed=5)], source="station", headers=STATION
        )
    if action == "customer_photos":
        return upload_photos(
            client, rid, [make_photo_bytes(seed=5)], source="customer", headers=bearer(token)
        )
    raise AssertionError(action)


STATUSES = sorted({status for status, _ in ILLEGAL}, key=[s for s, _ in ILLEGAL].index)


@pytest.mark.parametrize("status", STATUSES)
def test_illegal_steps_are_409_with_current_status(api_client: TestClient, status: str) -> None:
    # One return per status, every illegal step tried on it: driving a return is the slow part.
    ret, token = return_in_status(api_client, status)
    before = api_client.get(f"/v1/returns/{ret['id']}", headers=STATION).json()

    for action in [a for s, a in ILLEGAL if s == status]:
        response = _attempt(api_client, action, ret["id"], token)

        if status == "closed" and action == "refund_new_key":
            # A paid return answers a new key with the refund already paid, never a second one.
            assert response.status_code == 200, response.text
            assert response.json()["id"] == before["refund"]["id"]
        else:
            assert response.status_code == 409, (action, response.text)
            error = response.json()["error"]
            assert error["details"]["current_status"] == status, action
            assert error["hint"]
        after = api_client.get(f"/v1/returns/{ret['id']}", headers=STATION).json()
        assert after["status"] == before["status"], action
        assert len(after["photos"]) == len(before["photos"]), action
        assert after["decision"] == before["decision"], action
        assert after["refund"] == before["refund"], action


def test_close_with_refund_due_is_409(api_client: TestClient) -> None:
    ret, _ = return_in_status(api_client, "inspected")
    assert ret["decision"]["refund"]["amount_cents"] > 0
    assert "close" not in ret["allowed_actions"]

    response = api_client.post(f"/v1/returns/{ret['id']}/close", headers=STATION)

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "refund_due"


def test_rejected_return_can_only_be_closed(api_client: TestClient) -> None:
    ret, _ = return_in_status(api_client, "rejected", price_cents=900_000)
    assert ret["status"] == "rejected"
    assert ret["allowed_actions"] == ["close"]
    assert ret["label"] is None

    closed = api_client.post(f"/v1/returns/{ret['id']}/close", headers=STATION)

    assert closed.status_code == 200 and closed.json()["status"] == "closed"
