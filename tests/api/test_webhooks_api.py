"""Webhooks API: registration, the dead-letter queue visible through the API, and retry, with
deliveries made by the real worker pass to a real local receiver."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from inspection.api.main import create_app
from inspection.returns.outbox import enqueue_event
from inspection.returns.webhooks import deliver_due
from inspection.settings import Settings, WebhookSettings
from inspection.store.records import utcnow
from tests.fixtures.database import ADMIN, INTEGRATION, QA, STATION, SettingsFactory
from tests.returns.test_qa import Seeder
from tests.returns.test_webhooks import Receiver, receiver  # noqa: F401 - fixture

MAX_ATTEMPTS = 3


@pytest.fixture
def app_settings(make_settings: SettingsFactory, database_url: str, tmp_path: Path) -> Settings:
    return make_settings(
        database_url=database_url,
        models_dir=tmp_path / "no-models",
        webhook=WebhookSettings(
            run_worker=False, max_attempts=MAX_ATTEMPTS, backoff_base_seconds=1, timeout_seconds=5
        ),
    )


@pytest.fixture
def client(app_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(app_settings), raise_server_exceptions=False) as test_client:
        yield test_client


def _register(client: TestClient, url: str, **extra: object) -> dict:
    from tests.returns.test_webhooks import SECRET

    response = client.post(
        "/v1/webhooks",
        json={"url": url, "events": ["*"], "secret": SECRET, **extra},
        headers=INTEGRATION,
    )
    assert response.status_code == 201, response.text
    created: dict = response.json()
    return created


def test_register_returns_the_secret_once(client: TestClient) -> None:
    response = client.post(
        "/v1/webhooks",
        json={"url": "https://merchant.example/hooks", "events": ["return.*", "refund.released"]},
        headers=INTEGRATION,
    )
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["secret"].startswith("whsec_") and len(created["secret"]) > 30
    assert created["events"] == ["refund.released", "return.*"]
    listed = client.get("/v1/webhooks", headers=ADMIN).json()
    assert listed["count"] == 1
    assert "secret" not in listed["data"][0]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"url": "ftp://merchant.example/x"}, "invalid_input"),
        ({"url": "not a url"}, "invalid_input"),
        ({"url": "https://m.example/h", "events": ["return.teleported"]}, "unknown_event_type"),
        ({"url": "https://m.example/h", "events": []}, "invalid_input"),
        ({"url": "https://m.example/h", "secret": "short"}, "invalid_input"),
        ({"url": "https://m.example/h", "secret": "sixteen-chars-\u0000-nul"}, "invalid_input"),
        ({"url": "https://m.example/" + "x" * 2100}, "invalid_input"),
    ],
)
def test_bad_registration_is_422_and_writes_nothing(
    client: TestClient, body: dict, code: str
) -> None:
    response = client.post("/v1/webhooks", json=body, headers=INTEGRATION)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == code
    assert client.get("/v1/webhooks", headers=ADMIN).json()["count"] == 0


def test_webhooks_need_integration_or_admin(client: TestClient) -> None:
    body = {"url": "https://m.example/h"}
    assert client.post("/v1/webhooks", json=body, headers=STATION).status_code == 403
    assert client.get("/v1/webhooks/deliveries", headers=QA).status_code == 403
    assert client.post("/v1/webhooks/deliveries/1/retry").status_code == 401


def test_dead_letter_is_visible_and_retry_delivers_exactly_once(
    client: TestClient,
    app_settings: Settings,
    receiver: Receiver,  # noqa: F811 - the fixture
) -> None:
    engine = client.app.state.engine  # type: ignore[attr-defined]
    _register(client, receiver.url)
    return_id, _ = Seeder(engine).return_()
    with Session(engine) as session:
        event = enqueue_event(
            session=session,
            event_type="refund.released",
            payload={"return_id": return_id, "amount_cents": 2599, "currency": "EUR"},
            return_id=return_id,
        )
        session.commit()
        event_id = event.event_id

    # The merchant is down: every attempt fails until the delivery is dead.
    receiver.fail_first = MAX_ATTEMPTS
    receiver.status_when_failing = 502
    now = utcnow()
    for _ in range(MAX_ATTEMPTS + 2):
        deliver_due(engine=engine, settings=app_settings, now=now)
        now += timedelta(hours=1)
    dead = client.get("/v1/webhooks/deliveries", params={"status": "dead"}, headers=INTEGRATION)
    assert dead.status_code == 200
    page = dead.json()
    assert page["count"] == 1
    row = page["data"][0]
    assert row["event_id"] == event_id and row["event_type"] == "refund.released"
    assert row["attempts"] == MAX_ATTEMPTS and row["next_attempt_at"] is None
    assert "HTTP 502" in row["last_error"]
    assert receiver.processed == {}

    # Retrying a delivery that is not dead is refused; retrying the dead one re-queues it.
    missing = client.post("/v1/webhooks/deliveries/999999/retry", headers=INTEGRATION)
    assert missing.status_code == 404
    too_big = client.post(f"/v1/webhooks/deliveries/{2**31}/retry", headers=INTEGRATION)
    assert too_big.status_code == 422  # past PostgreSQL's INTEGER: refused before the database
    retried = client.post(f"/v1/webhooks/deliveries/{row['id']}/retry", headers=INTEGRATION)
    assert retried.status_code == 200, retried.text
    assert retried.json()["status"] == "pending" and retried.json()["attempts"] == 0
    again = client.post(f"/v1/webhooks/deliveries/{row['id']}/retry", headers=INTEGRATION)
    assert again.status_code == 409
    assert again.json()["error"]["details"]["current_status"] == "pending"

    # The merchant is back: one pass delivers it, once.
    deliver_due(engine=engine, settings=app_settings)
    deliver_due(engine=engine, settings=app_settings)
    assert receiver.processed == {event_id: 1}
    assert receiver.bad_signatures == 0
    delivered = client.get(
        "/v1/webhooks/deliveries", params={"status": "delivered"}, headers=INTEGRATION
    ).json()
    assert [d["id"] for d in delivered["data"]] == [row["id"]]
    assert (
        client.get("/v1/webhooks/deliveries", params={"status": "dead"}, headers=ADMIN).json()[
            "count"
        ]
        == 0
    )
    bad_filter = client.get("/v1/webhooks/deliveries", params={"status": "lost"}, headers=ADMIN)
    assert bad_filter.status_code == 422

    # The retry is on the return's audit chain, and the chain still verifies.
    audit = client.get(f"/v1/returns/{return_id}/audit", headers=ADMIN).json()
    assert audit["chain_valid"] is True
    assert [e["action"] for e in audit["events"]] == ["webhook.retry_requested"]
    assert audit["events"][0]["actor"] == "integration"


def test_lifespan_worker_delivers_in_the_background_and_stops_with_the_app(
    make_settings: SettingsFactory,
    database_url: str,
    tmp_path: Path,
    receiver: Receiver,  # noqa: F811 - the fixture
) -> None:
    import time

    settings = make_settings(
        database_url=database_url,
        models_dir=tmp_path / "no-models",
        webhook=WebhookSettings(run_worker=True, worker_interval_seconds=0.05),
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        _register(client, receiver.url)
        engine = client.app.state.engine  # type: ignore[attr-defined]
        with Session(engine) as session:
            event = enqueue_event(
                session=session, event_type="decision.made", payload={"n": 1}, return_id=None
            )
            session.commit()
            event_id = event.event_id
        # Bounded wait for the background worker; the assertion is on what arrived, not speed.
        for _ in range(600):
            if receiver.processed:
                break
            time.sleep(0.025)
    # Leaving the block ran the lifespan shutdown, which awaited the worker's stop.
    assert receiver.processed == {event_id: 1}
    assert receiver.bad_signatures == 0


def test_deactivated_endpoint_gets_nothing_and_its_backlog_is_dead_lettered(
    client: TestClient,
    app_settings: Settings,
    receiver: Receiver,  # noqa: F811 - the fixture
) -> None:
    engine = client.app.state.engine  # type: ignore[attr-defined]
    endpoint = _register(client, receiver.url)
    with Session(engine) as session:
        enqueue_event(session=session, event_type="decision.made", payload={}, return_id=None)
        session.commit()
    response = client.delete(f"/v1/webhooks/{endpoint['id']}", headers=INTEGRATION)
    assert response.status_code == 200, response.text
    assert response.json()["active"] is False
    assert client.delete(f"/v1/webhooks/{endpoint['id']}", headers=ADMIN).status_code == 200
    assert client.delete("/v1/webhooks/424242", headers=ADMIN).status_code == 404

    dead = client.get("/v1/webhooks/deliveries", params={"status": "dead"}, headers=ADMIN).json()
    assert dead["count"] == 1 and dead["data"][0]["last_error"] == "endpoint deactivated"
    retry = client.post(f"/v1/webhooks/deliveries/{dead['data'][0]['id']}/retry", headers=ADMIN)
    assert retry.status_code == 409 and retry.json()["error"]["code"] == "endpoint_inactive"

    with Session(engine) as session:
        enqueue_event(session=session, event_type="decision.made", payload={}, return_id=None)
        session.commit()
    assert deliver_due(engine=engine, settings=app_settings) == 0
    assert receiver.requests == []
    everything = client.get("/v1/webhooks/deliveries", headers=ADMIN).json()
    assert everything["count"] == 1  # the new event was not fanned out to the inactive endpoint
