"""A return of two order lines: photos per item, one decision for the return, and a refund
that is the sum of both items' quotes."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.fixtures.database import ADMIN, STATION, bearer, create_order
from tests.fixtures.images import make_photo_bytes


def _upload(
    client: TestClient, rid: int, item_id: int, seed: int, source: str, headers: dict[str, str]
) -> None:
    response = client.post(
        f"/v1/returns/{rid}/photos",
        files=[("files", (f"p{seed}.jpg", make_photo_bytes(seed=seed), "image/jpeg"))],
        data={"source": source, "return_item_id": str(item_id)},
        headers=headers,
    )
    assert response.status_code == 201, response.text
    assert response.json()["photos"][0]["return_item_id"] == item_id


def test_two_items_one_decision_summed_refund(api_client: TestClient) -> None:
    lines = [
        {"sku": "MUG-1", "name": "Mug", "category": "hard_goods", "price_cents": 1500},
        {"sku": "LAMP-1", "name": "Lamp", "category": "hard_goods", "price_cents": 3500},
    ]
    order = create_order(api_client, lines=lines)
    opened = api_client.post(
        "/v1/returns",
        json={
            "order_number": order["order_number"],
            "email": order["customer"]["email"],
            "items": [
                {"order_line_id": line["id"], "reason_code": "damaged_on_arrival"}
                for line in order["lines"]
            ],
        },
    )
    assert opened.status_code == 201, opened.text
    ret, token = opened.json()["return"], opened.json()["customer_token"]
    rid = ret["id"]
    items = [item["id"] for item in ret["items"]]
    assert len(items) == 2

    other_return_item = items[-1] + 1000
    wrong = api_client.post(
        f"/v1/returns/{rid}/photos",
        files=[("files", ("x.jpg", make_photo_bytes(seed=1), "image/jpeg"))],
        data={"source": "customer", "return_item_id": str(other_return_item)},
        headers=bearer(token),
    )
    assert wrong.status_code == 422
    for seed, item_id in enumerate(items, start=71):
        _upload(api_client, rid, item_id, seed, "customer", bearer(token))

    state = api_client.post(f"/v1/returns/{rid}/submit", headers=bearer(token)).json()
    assert state["decision"] is not None and state["decision"]["stage"] == "claim"
    if state["status"] == "needs_review":
        state = api_client.post(
            f"/v1/returns/{rid}/decision",
            json={"outcome": "approve", "reason": "both items visibly damaged"},
            headers=ADMIN,
        ).json()
    assert state["status"] == "label_sent", state["decision"]

    for seed, item_id in enumerate(items, start=81):
        _upload(api_client, rid, item_id, seed, "station", STATION)
    assert api_client.post(f"/v1/returns/{rid}/receive", headers=STATION).status_code == 200
    inspected = api_client.post(
        f"/v1/returns/{rid}/inspection",
        json={"grade": "refurbish", "reason": "scuffs on both items"},
        headers=STATION,
    )
    assert inspected.status_code == 200, inspected.text
    quote = inspected.json()["decision"]["refund"]

    quoted = api_client.get(f"/v1/returns/{rid}/refund-quote", headers=STATION).json()
    assert quoted["amount_cents"] == quote["amount_cents"]
    assert quote["gross_cents"] == 1500 + 3500
    assert 0 < quote["amount_cents"] <= 5000
    refund = api_client.post(f"/v1/returns/{rid}/refund", headers=STATION).json()
    assert refund["amount_cents"] == quote["amount_cents"]
