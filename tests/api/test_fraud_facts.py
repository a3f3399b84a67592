"""Facts the returns domain gathers for the fraud signals, seen end to end: a photo reused on
another customer's return routes the claim to review with the match as evidence."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from inspection.returns import facts
from tests.fixtures.database import (
    QA,
    STATION,
    bearer,
    create_order,
    open_return,
    return_in_status,
    upload_photos,
)
from tests.fixtures.images import make_photo_bytes


def test_photo_reused_from_another_return_goes_to_review(api_client: TestClient) -> None:
    photo = make_photo_bytes(seed=61, kind="mug")
    first, token_a = open_return(api_client, create_order(api_client, category="hard_goods"))
    upload_photos(api_client, first["id"], [photo], source="customer", headers=bearer(token_a))
    second, token_b = open_return(api_client, create_order(api_client, category="hard_goods"))
    upload_photos(api_client, second["id"], [photo], source="customer", headers=bearer(token_b))

    decided = api_client.post(f"/v1/returns/{second['id']}/submit", headers=bearer(token_b)).json()

    assert decided["status"] == "needs_review", decided["decision"]
    # The customer learns the return is being reviewed, not which fraud signal fired.
    assert decided["decision"]["fraud_signals"] == [] and decided["decision"]["fraud_score"] == 0
    assert "photo_reuse" not in decided["decision"]["reason_codes"]
    decided = api_client.get(f"/v1/returns/{second['id']}", headers=QA).json()
    signals = {s["reason_code"]: s for s in decided["decision"]["fraud_signals"]}
    assert "photo_reuse" in signals, signals
    assert "photo_reuse" in decided["decision"]["reason_codes"]
    assert decided["allowed_actions"] == ["decide"]
    unknown = api_client.post(
        f"/v1/returns/{second['id']}/decision",
        json={"outcome": "maybe", "reason": "unsure"},
        headers=QA,
    )
    assert unknown.status_code == 422
    assert unknown.json()["error"]["details"]["fields"][0]["field"] == "outcome"
    no_reason = api_client.post(
        f"/v1/returns/{second['id']}/decision", json={"outcome": "reject"}, headers=QA
    )
    assert no_reason.status_code == 422
    rejected = api_client.post(
        f"/v1/returns/{second['id']}/decision",
        json={"outcome": "reject", "reason": "photo copied from another customer's return"},
        headers=QA,
    )
    assert rejected.status_code == 200
    assert rejected.json()["status"] == "rejected"
    assert rejected.json()["decision"]["decided_by"] == "qa"


def test_bad_return_bodies_are_422_and_write_nothing(api_client: TestClient) -> None:
    order = create_order(api_client)
    line_id = order["lines"][0]["id"]
    base = {"order_number": order["order_number"], "email": order["customer"]["email"]}
    bad = [
        {**base, "items": [{"order_line_id": line_id, "reason_code": "because"}]},
        {**base, "items": [{"order_line_id": str(line_id), "reason_code": "defective"}]},
        {**base, "items": [{"order_line_id": line_id, "reason_code": "defective", "quantity": -1}]},
        {**base, "items": []},
        {"order_number": order["order_number"], "items": [{"order_line_id": line_id}]},
        {**base, "items": [{"order_line_id": 999999, "reason_code": "defective"}]},
    ]
    for body in bad:
        response = api_client.post("/v1/returns", json=body)
        assert response.status_code == 422, (body, response.text)
        error = response.json()["error"]
        assert error["details"]["fields"], error
    malformed = api_client.post(
        "/v1/returns", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert malformed.status_code == 422
    assert api_client.get("/v1/returns", headers=QA).json()["count"] == 0


def test_ids_out_of_range_and_nul_text_are_4xx_not_500(api_client: TestClient) -> None:
    order = create_order(api_client)
    huge = 2**40
    nul_reason = {
        "order_number": order["order_number"],
        "email": order["customer"]["email"],
        "items": [
            {
                "order_line_id": order["lines"][0]["id"],
                "reason_code": "other",
                "reason_text": "bad\u0000text",
            }
        ],
    }

    responses = [
        api_client.get(f"/v1/returns/{huge}", headers=QA),
        api_client.get(f"/v1/photos/{huge}/image", headers=QA),
        api_client.post(f"/v1/returns/{huge}/refund", headers=QA),
        api_client.get("/v1/returns", params={"customer_id": huge}, headers=QA),
        api_client.get("/v1/returns", params={"rma": "RMA-\u0000"}, headers=QA),
        api_client.get("/v1/orders/A%00B", headers=QA),
        api_client.post("/v1/returns", json=nul_reason),
    ]

    assert [r.status_code for r in responses] == [422, 422, 422, 422, 422, 422, 422], [
        r.text for r in responses
    ]


def test_station_photos_of_other_returns_are_not_reuse_candidates(
    api_client: TestClient,
) -> None:
    # The station's camera photographs every unit of a model the same way; a customer photo
    # that looks like one is not a reused photo (customers never see station photos).
    photo = make_photo_bytes(seed=71, kind="mug")
    first, _ = return_in_status(api_client, "label_sent", category="hard_goods")
    station = upload_photos(api_client, first["id"], [photo], source="station", headers=STATION)
    assert station.status_code == 201, station.text
    second, token = open_return(api_client, create_order(api_client, category="hard_goods"))
    upload_photos(api_client, second["id"], [photo], source="customer", headers=bearer(token))

    api_client.post(f"/v1/returns/{second['id']}/submit", headers=bearer(token))

    decided = api_client.get(f"/v1/returns/{second['id']}", headers=QA).json()
    signals = {s["reason_code"] for s in decided["decision"]["fraud_signals"]}
    assert "photo_reuse" not in signals and "photo_reuse_same_customer" not in signals


def test_photo_reuse_search_reads_candidates_in_chunks(
    api_client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One candidate per chunk: matches on earlier returns are all found, each once.
    monkeypatch.setattr(facts, "MATCH_CHUNK", 1)
    photo = make_photo_bytes(seed=81, kind="mug")
    earlier = []
    for _ in range(2):
        ret, token = open_return(api_client, create_order(api_client, category="hard_goods"))
        upload_photos(api_client, ret["id"], [photo], source="customer", headers=bearer(token))
        earlier.append(ret["id"])
    third, token = open_return(api_client, create_order(api_client, category="hard_goods"))
    upload_photos(api_client, third["id"], [photo], source="customer", headers=bearer(token))

    api_client.post(f"/v1/returns/{third['id']}/submit", headers=bearer(token))

    decided = api_client.get(f"/v1/returns/{third['id']}", headers=QA).json()
    signals = {s["reason_code"]: s for s in decided["decision"]["fraud_signals"]}
    matched = [m["matched_return_id"] for m in signals["photo_reuse"]["evidence"]["matches"]]
    assert sorted(matched) == sorted(earlier)
