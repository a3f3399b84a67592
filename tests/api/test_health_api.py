"""Operations endpoints: liveness, readiness with database and models, Prometheus metrics."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.fixtures.database import STATION, return_in_status


def test_healthz_and_readyz(api_client: TestClient) -> None:
    assert api_client.get("/healthz").json() == {"status": "ok"}
    ready = api_client.get("/readyz")
    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert body["database"] == "ok" and body["models"]["grader"]


def test_readyz_is_503_when_the_database_is_gone(api_client: TestClient) -> None:
    engine = api_client.app.state.engine  # type: ignore[attr-defined]
    api_client.app.state.engine = None  # type: ignore[attr-defined]
    try:
        response = api_client.get("/readyz")
    finally:
        api_client.app.state.engine = engine  # type: ignore[attr-defined]
    assert response.status_code == 503
    assert response.json()["database"] == "unreachable"


def test_metrics_count_refunds_and_decisions(api_client: TestClient) -> None:
    ret, _ = return_in_status(api_client, "inspected")
    api_client.post(f"/v1/returns/{ret['id']}/refund", headers=STATION)

    text = api_client.get("/metrics").text

    assert 'inspection_refunds_total{adapter="ledger"}' in text
    assert "inspection_refund_cycle_seconds_count" in text
    assert "inspection_decisions_total" in text
