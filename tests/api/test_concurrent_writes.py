"""Concurrent writers on one database: parallel requests that read then write must queue, not
fail with 'database is locked' (SQLite) or race past a status check (both databases)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi.testclient import TestClient

from tests.fixtures.database import STATION, bearer, create_order, return_in_status

WORKERS = 12


def _together(count: int, work: Any) -> list[Any]:
    barrier = threading.Barrier(count)

    def run(index: int) -> Any:
        barrier.wait()
        return work(index)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(run, range(count)))


def test_parallel_opens_all_succeed(api_client: TestClient) -> None:
    orders = [create_order(api_client) for _ in range(WORKERS)]

    def open_one(index: int) -> int:
        order = orders[index]
        response = api_client.post(
            "/v1/returns",
            json={
                "order_number": order["order_number"],
                "email": order["customer"]["email"],
                "items": [{"order_line_id": order["lines"][0]["id"], "reason_code": "defective"}],
            },
        )
        return response.status_code

    assert _together(WORKERS, open_one) == [201] * WORKERS
    listing = api_client.get("/v1/returns", params={"limit": 100}, headers=STATION).json()
    assert listing["count"] == WORKERS
    assert len({r["rma"] for r in listing["data"]}) == WORKERS


def test_double_submit_decides_once(api_client: TestClient) -> None:
    from tests.fixtures.database import open_return, upload_photos
    from tests.fixtures.images import make_photo_bytes

    order = create_order(api_client, category="hard_goods")
    ret, token = open_return(api_client, order)
    upload_photos(
        api_client, ret["id"], [make_photo_bytes(seed=51)], source="customer", headers=bearer(token)
    )

    codes = _together(
        6,
        lambda _: (
            api_client.post(f"/v1/returns/{ret['id']}/submit", headers=bearer(token)).status_code
        ),
    )

    assert sorted(codes) == [200] + [409] * 5, codes
    state = api_client.get(f"/v1/returns/{ret['id']}", headers=STATION).json()
    assert state["decision"] is not None


def test_parallel_receives_move_once(api_client: TestClient) -> None:
    ret, _ = return_in_status(api_client, "label_sent")

    codes = _together(
        6,
        lambda _: api_client.post(f"/v1/returns/{ret['id']}/receive", headers=STATION).status_code,
    )

    assert sorted(codes) == [200] + [409] * 5, codes


def test_parallel_refunds_on_different_returns_all_pay(api_client: TestClient) -> None:
    # Each release settles in its own transaction; none may read before it holds the lock.
    returns = [return_in_status(api_client, "inspected")[0] for _ in range(6)]

    def release(index: int) -> tuple[int, str]:
        response = api_client.post(f"/v1/returns/{returns[index]['id']}/refund", headers=STATION)
        return response.status_code, response.json().get("status", response.text)

    results = _together(len(returns), release)

    assert results == [(201, "paid")] * len(returns), results
