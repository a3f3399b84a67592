"""Role isolation: a customer token reaches only its own return; staff roles only their steps;
opening a return needs the right order number and e-mail pair."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from inspection.settings import Settings
from tests.fixtures.database import (
    ADMIN,
    QA,
    STATION,
    bearer,
    create_order,
    open_return,
    return_in_status,
    upload_photos,
)
from tests.fixtures.images import make_photo_bytes


def test_customer_cannot_read_or_change_another_return(api_client: TestClient) -> None:
    ret_a, token_a = open_return(api_client, create_order(api_client))
    ret_b, token_b = open_return(api_client, create_order(api_client))
    upload = upload_photos(
        api_client,
        ret_b["id"],
        [make_photo_bytes(seed=2)],
        source="customer",
        headers=bearer(token_b),
    )
    assert upload.status_code == 201
    photo_b = upload.json()["photos"][0]["id"]

    assert api_client.get(f"/v1/returns/{ret_a['id']}", headers=bearer(token_a)).status_code == 200
    attempts = [
        api_client.get(f"/v1/returns/{ret_b['id']}", headers=bearer(token_a)),
        api_client.post(f"/v1/returns/{ret_b['id']}/submit", headers=bearer(token_a)),
        upload_photos(
            api_client,
            ret_b["id"],
            [make_photo_bytes(seed=3)],
            source="customer",
            headers=bearer(token_a),
        ),
        api_client.get(f"/v1/photos/{photo_b}/image", headers=bearer(token_a)),
    ]
    assert [r.status_code for r in attempts] == [403, 403, 403, 403]
    state = api_client.get(f"/v1/returns/{ret_b['id']}", headers=STATION).json()
    assert state["status"] == "return_requested" and len(state["photos"]) == 1


def test_customer_token_is_not_a_staff_key(api_client: TestClient) -> None:
    ret, token = open_return(api_client, create_order(api_client))

    listing = api_client.get("/v1/returns", headers=bearer(token))
    receive = api_client.post(f"/v1/returns/{ret['id']}/receive", headers=bearer(token))
    station_photo = upload_photos(
        api_client, ret["id"], [make_photo_bytes(seed=4)], source="station", headers=bearer(token)
    )

    assert listing.status_code == 403
    assert receive.status_code == 403
    assert station_photo.status_code == 403


def test_forged_or_missing_credentials_are_401(api_client: TestClient) -> None:
    ret, token = open_return(api_client, create_order(api_client))
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    other_id = token.replace(f"ct1.{ret['id']}.", f"ct1.{ret['id'] + 1}.")

    assert api_client.get(f"/v1/returns/{ret['id']}").status_code == 401
    assert api_client.get(f"/v1/returns/{ret['id']}", headers=bearer(forged)).status_code == 401
    assert (
        api_client.get(f"/v1/returns/{ret['id'] + 1}", headers=bearer(other_id)).status_code == 401
    )
    wrong_key = api_client.get("/v1/returns", headers={"X-API-Key": "guess"})
    assert wrong_key.status_code == 401 and "X-API-Key" in wrong_key.json()["error"]["hint"]


def test_open_return_needs_matching_order_and_email(api_client: TestClient) -> None:
    order = create_order(api_client)
    item = {"order_line_id": order["lines"][0]["id"], "reason_code": "defective"}

    wrong_email = api_client.post(
        "/v1/returns",
        json={"order_number": order["order_number"], "email": "someone@else.com", "items": [item]},
    )
    wrong_order = api_client.post(
        "/v1/returns",
        json={"order_number": "NOPE-1", "email": order["customer"]["email"], "items": [item]},
    )

    assert wrong_email.status_code == 404 and wrong_order.status_code == 404
    assert wrong_email.json()["error"]["message"] == wrong_order.json()["error"]["message"]


def test_cannot_return_more_than_bought(api_client: TestClient) -> None:
    order = create_order(api_client, quantity=1)
    open_return(api_client, order)

    again = api_client.post(
        "/v1/returns",
        json={
            "order_number": order["order_number"],
            "email": order["customer"]["email"],
            "items": [{"order_line_id": order["lines"][0]["id"], "reason_code": "defective"}],
        },
    )

    assert again.status_code == 422
    assert "can still be returned" in again.json()["error"]["message"]


def test_station_cannot_do_admin_things(api_client: TestClient) -> None:
    ret, _ = open_return(api_client, create_order(api_client))

    delete = api_client.delete(f"/v1/customers/{ret['customer_id']}/photos", headers=STATION)
    qa_decides_receipt = api_client.post(f"/v1/returns/{ret['id']}/receive", headers=QA)

    assert delete.status_code == 403
    assert qa_decides_receipt.status_code == 403
    assert (
        api_client.delete(f"/v1/customers/{ret['customer_id']}/photos", headers=ADMIN).status_code
        == 200
    )


def test_staff_list_filters_by_rma_and_status(api_client: TestClient) -> None:
    ret, _ = return_in_status(api_client, "label_sent")
    open_return(api_client, create_order(api_client))

    by_rma = api_client.get("/v1/returns", params={"rma": ret["rma"]}, headers=STATION).json()
    by_status = api_client.get(
        "/v1/returns", params={"status": "label_sent"}, headers=STATION
    ).json()
    bad_status = api_client.get("/v1/returns", params={"status": "lost"}, headers=STATION)

    assert by_rma["count"] == 1 and by_rma["data"][0]["id"] == ret["id"]
    assert [r["id"] for r in by_status["data"]] == [ret["id"]]
    assert bad_status.status_code == 422


def test_list_filters_by_creation_time_and_refuses_naive_times(api_client: TestClient) -> None:
    ret, _ = open_return(api_client, create_order(api_client))
    created = ret["created_at"]

    inside = api_client.get(
        "/v1/returns", params={"created_from": created, "limit": 5}, headers=STATION
    )
    naive = api_client.get(
        "/v1/returns", params={"created_from": "2026-01-01T00:00:00"}, headers=STATION
    )

    assert inside.status_code == 200 and inside.json()["count"] == 1
    assert naive.status_code == 422
    assert naive.json()["error"]["details"]["fields"][0]["field"] == "created_from"


def test_database_api_key_from_cli_authenticates_with_its_role(
    api_client: TestClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from inspection import cli

    monkeypatch.setattr(cli, "get_settings", lambda: settings)
    result = CliRunner().invoke(cli.app, ["create-api-key", "--role", "qa", "--name", "qa desk"])
    assert result.exit_code == 0, result.output
    key = result.output.strip().splitlines()[-1]

    listing = api_client.get("/v1/returns", headers={"X-API-Key": key})
    refund = api_client.post("/v1/returns/1/refund", headers={"X-API-Key": key})
    bad_role = CliRunner().invoke(cli.app, ["create-api-key", "--role", "boss", "--name", "x"])

    assert listing.status_code == 200
    assert refund.status_code == 403  # qa may not release money
    assert bad_role.exit_code == 2 and "unknown role" in bad_role.output
