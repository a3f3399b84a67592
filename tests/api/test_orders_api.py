"""Orders API: create, duplicates, bulk CSV/JSON import all-or-nothing, and bad JSON bodies
answered 422 with field messages and nothing written."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func
from sqlmodel import Session, select

from inspection.store.models import Customer, Order, OrderLine
from tests.fixtures.database import INTEGRATION, STATION, order_payload

CSV_HEADER = (
    "order_number,customer_external_id,customer_email,ordered_at,delivered_at,currency,"
    "sku,name,category,price_cents,quantity,final_sale\n"
)


def _counts(client: TestClient) -> tuple[int, int, int]:
    with Session(client.app.state.engine) as session:  # type: ignore[attr-defined]
        return (
            session.exec(select(func.count()).select_from(Order)).one(),
            session.exec(select(func.count()).select_from(OrderLine)).one(),
            session.exec(select(func.count()).select_from(Customer)).one(),
        )


def test_create_and_read_order(api_client: TestClient) -> None:
    body = order_payload(price_cents=12345, quantity=2)

    created = api_client.post("/v1/orders", json=body, headers=INTEGRATION)

    assert created.status_code == 201, created.text
    order = created.json()
    assert order["lines"][0]["price_cents"] == 12345 and order["lines"][0]["quantity"] == 2
    assert order["customer"]["email"] == body["customer"]["email"]
    read = api_client.get(f"/v1/orders/{body['order_number']}", headers=STATION)
    assert read.status_code == 200 and read.json() == order
    assert read.json()["ordered_at"].endswith(("+00:00", "Z"))


def test_duplicate_order_number_is_409(api_client: TestClient) -> None:
    body = order_payload()
    assert api_client.post("/v1/orders", json=body, headers=INTEGRATION).status_code == 201

    again = api_client.post("/v1/orders", json=body, headers=INTEGRATION)

    assert again.status_code == 409
    assert _counts(api_client)[0] == 1


def _with(body: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    target: Any = body
    keys = path.split(".")
    for key in keys[:-1]:
        target = target[int(key)] if key.isdigit() else target[key]
    last = keys[-1]
    if value is KeyError:
        del target[last]
    else:
        target[last] = value
    return body


BAD_BODIES = [
    ("lines.0.price_cents", -5, "lines.0.price_cents"),
    ("lines.0.price_cents", 19.99, "lines.0.price_cents"),
    ("lines.0.price_cents", "4999", "lines.0.price_cents"),
    ("lines.0.quantity", 0, "lines.0.quantity"),
    ("lines.0.final_sale", "maybe", "lines.0.final_sale"),
    ("currency", "euro", "currency"),
    ("ordered_at", "2026-01-01T10:00:00", "ordered_at"),
    ("ordered_at", KeyError, "ordered_at"),
    ("customer.email", "not-an-email", "customer.email"),
    ("lines", [], "lines"),
    ("lines.0.category", "spaceships", "lines.0.category"),
    ("unexpected", 1, "unexpected"),
]


@pytest.mark.parametrize(
    ("path", "value", "field"), BAD_BODIES, ids=[b[0] + "=" + repr(b[1]) for b in BAD_BODIES]
)
def test_bad_order_body_is_422_with_field_and_writes_nothing(
    api_client: TestClient, path: str, value: Any, field: str
) -> None:
    body = _with(order_payload(), path, value)

    response = api_client.post("/v1/orders", json=body, headers=INTEGRATION)

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_input"
    fields = [f["field"] for f in error["details"]["fields"]]
    assert any(f.startswith(field) for f in fields), fields
    assert _counts(api_client) == (0, 0, 0)


def test_orders_need_integration_role(api_client: TestClient) -> None:
    response = api_client.post("/v1/orders", json=order_payload(), headers=STATION)
    assert response.status_code == 403
    anonymous = api_client.post("/v1/orders", json=order_payload())
    assert anonymous.status_code == 401
    assert _counts(api_client) == (0, 0, 0)


def test_csv_import_groups_lines_and_skips_existing(api_client: TestClient) -> None:
    csv_text = CSV_HEADER + (
        "C-1,cust-1,one@example.com,2026-11-01T10:00:00+00:00,2026-11-03T10:00:00+00:00,EUR,"
        "SKU-A,Phone,electronics,49900,1,false\n"
        "C-1,cust-1,one@example.com,2026-11-01T10:00:00+00:00,2026-11-03T10:00:00+00:00,EUR,"
        "SKU-B,Case,hard_goods,1999,2,\n"
        "C-2,cust-2,two@example.com,2026-11-02T10:00:00+00:00,,EUR,SKU-C,Shirt,apparel,2500,,true\n"
    )
    files = {"file": ("orders.csv", csv_text.encode(), "text/csv")}

    first = api_client.post("/v1/orders/import", files=files, headers=INTEGRATION)
    second = api_client.post("/v1/orders/import", files=files, headers=INTEGRATION)

    assert first.status_code == 201, first.text
    assert first.json() == {"created": 2, "skipped_existing": 0}
    assert second.json() == {"created": 0, "skipped_existing": 2}
    order = api_client.get("/v1/orders/C-1", headers=STATION).json()
    assert [line["sku"] for line in order["lines"]] == ["SKU-A", "SKU-B"]
    assert order["lines"][1]["quantity"] == 2
    shirt = api_client.get("/v1/orders/C-2", headers=STATION).json()
    assert shirt["delivered_at"] is None and shirt["lines"][0]["final_sale"] is True


def test_csv_import_with_one_bad_row_writes_nothing(api_client: TestClient) -> None:
    csv_text = CSV_HEADER + (
        "C-10,cust-10,ten@example.com,2026-11-01T10:00:00+00:00,,EUR,SKU-A,Phone,electronics,49900,1,false\n"
        "C-11,cust-11,eleven@example.com,2026-11-01T10:00:00+00:00,,EUR,SKU-B,Case,hard_goods,-3,1,false\n"
        "C-12,cust-12,twelve@example.com,yesterday,,EUR,SKU-C,Case,hard_goods,100,1,false\n"
    )

    response = api_client.post(
        "/v1/orders/import",
        files={"file": ("orders.csv", csv_text.encode(), "text/csv")},
        headers=INTEGRATION,
    )

    assert response.status_code == 422, response.text
    errors = response.json()["error"]["details"]["errors"]
    assert {"row": 2, "field": "price_cents"} in [
        {"row": e["row"], "field": e["field"]} for e in errors
    ]
    assert any(e["row"] == 3 and e["field"] == "ordered_at" for e in errors)
    assert _counts(api_client) == (0, 0, 0)


def test_csv_missing_columns_is_422(api_client: TestClient) -> None:
    response = api_client.post(
        "/v1/orders/import",
        files={"file": ("orders.csv", b"order_number,sku\nX,Y\n", "text/csv")},
        headers=INTEGRATION,
    )
    assert response.status_code == 422
    assert "missing columns" in response.json()["error"]["message"]


def test_json_import_all_or_nothing(api_client: TestClient) -> None:
    good = order_payload()
    bad = _with(order_payload(), "lines.0.price_cents", -1)

    rejected = api_client.post(
        "/v1/orders/import", json={"orders": [good, bad]}, headers=INTEGRATION
    )
    accepted = api_client.post("/v1/orders/import", json={"orders": [good]}, headers=INTEGRATION)

    assert rejected.status_code == 422
    assert rejected.json()["error"]["details"]["errors"][0]["row"] == 2
    assert accepted.status_code == 201 and accepted.json()["created"] == 1
    assert _counts(api_client)[0] == 1
