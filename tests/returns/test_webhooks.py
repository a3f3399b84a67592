"""Webhook outbox and delivery against a real local HTTP receiver: signatures, retries with
backoff, exactly-once at a deduplicating receiver, dead-letter, claims, and the worker task.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import http.server
import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from inspection.returns.outbox import enqueue_event, subscribes_to
from inspection.returns.signing import sign_payload, verify_signature
from inspection.returns.webhooks import (
    JITTER_FRACTION,
    backoff_seconds,
    deliver_due,
    start_delivery_worker,
)
from inspection.settings import Settings, WebhookSettings
from inspection.store.records import OutboxEvent, WebhookDelivery, WebhookEndpoint, utcnow

SECRET = "whsec_test_secret"


@pytest.fixture
def settings() -> Settings:
    s = Settings()
    s.webhook = WebhookSettings(
        max_attempts=4,
        backoff_base_seconds=2.0,
        backoff_max_seconds=60.0,
        timeout_seconds=5.0,
        worker_interval_seconds=0.05,
        run_worker=False,
    )
    return s


@dataclass
class Receiver:
    """A merchant endpoint: verifies signatures, fails the first `fail_first` requests of each
    event, and processes each event id once (it deduplicates, as the contract tells it to)."""

    fail_first: int = 0
    status_when_failing: int = 503
    delay_seconds: float = 0.0
    slow_requests: int = -1  # how many first requests are slow (-1: all, when delay_seconds)
    requests: list[dict] = field(default_factory=list)
    processed: dict[str, int] = field(default_factory=dict)  # times each event's effect ran
    duplicates: int = 0  # resends of an already processed event, answered 200 and ignored
    bad_signatures: int = 0
    on_request: Callable[[str], None] | None = None  # runs while the sender waits for us
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def handle(self, headers: dict[str, str], body: bytes) -> int:
        event_id = headers["X-Inspection-Event-Id"]
        ok = verify_signature(
            secret=SECRET,
            body=body,
            timestamp=headers["X-Inspection-Timestamp"],
            signature=headers["X-Inspection-Signature"],
            tolerance_seconds=None,  # tests move the sender's clock forward
        )
        if self.on_request is not None:
            self.on_request(event_id)
        with self.lock:
            self.requests.append({"headers": headers, "body": body})
            if not ok:
                self.bad_signatures += 1
                return 401
            seen = sum(
                1 for r in self.requests if r["headers"]["X-Inspection-Event-Id"] == event_id
            )
            if seen <= self.fail_first:
                return self.status_when_failing
            if event_id in self.processed:
                self.duplicates += 1
                return 200
            self.processed[event_id] = self.processed.get(event_id, 0) + 1
            slow = self.slow_requests < 0 or len(self.requests) <= self.slow_requests
        if self.delay_seconds and slow:
            time.sleep(self.delay_seconds)
        return 200


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            status = state.handle(dict(self.headers.items()), body)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks"
    yield state
    server.shutdown()
    server.server_close()


def _endpoint(
    engine: Engine, url: str, events: list[str] | None = None, active: bool = True
) -> int:
    with Session(engine) as session:
        endpoint = WebhookEndpoint(url=url, events=events or ["*"], secret=SECRET, active=active)
        session.add(endpoint)
        session.commit()
        assert endpoint.id is not None
        return endpoint.id


def _enqueue(engine: Engine, event_type: str = "return.approved", **payload: object) -> str:
    with Session(engine) as session:
        event = enqueue_event(
            session=session, event_type=event_type, payload=dict(payload), return_id=None
        )
        session.commit()
        return event.event_id


def _deliveries(engine: Engine) -> list[WebhookDelivery]:
    with Session(engine) as session:
        return list(session.exec(select(WebhookDelivery).order_by(col(WebhookDelivery.id))).all())


# --- signing --------------------------------------------------------------------------------


def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    body = b'{"id":"evt_1"}'
    expected = hmac.new(b"k", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign_payload(secret="k", body=body, timestamp=1_700_000_000) == f"sha256={expected}"


def test_verify_signature_rejects_tampering_wrong_secret_and_old_timestamps() -> None:
    body = b'{"amount_cents":1999}'
    sig = sign_payload(secret="k", body=body, timestamp=1000)
    assert verify_signature(secret="k", body=body, timestamp="1000", signature=sig, now=1010)
    assert not verify_signature(
        secret="k", body=body + b" ", timestamp=1000, signature=sig, now=1010
    )
    assert not verify_signature(secret="other", body=body, timestamp=1000, signature=sig, now=1010)
    assert not verify_signature(secret="k", body=body, timestamp=1001, signature=sig, now=1010)
    assert not verify_signature(secret="k", body=body, timestamp=1000, signature=sig, now=5000)
    assert not verify_signature(secret="k", body=body, timestamp="soon", signature=sig, now=1010)


# --- outbox fan-out -------------------------------------------------------------------------


def test_enqueue_fans_out_to_active_subscribed_endpoints_only(engine: Engine) -> None:
    everything = _endpoint(engine, "http://127.0.0.1:9/all")
    refunds = _endpoint(engine, "http://127.0.0.1:9/refunds", events=["refund.released"])
    returns_glob = _endpoint(engine, "http://127.0.0.1:9/returns", events=["return.*"])
    _endpoint(engine, "http://127.0.0.1:9/off", active=False)
    _enqueue(engine, "return.approved", return_id=1)
    _enqueue(engine, "refund.released", amount_cents=1999)
    rows = _deliveries(engine)
    by_event: dict[int, set[int]] = {}
    for row in rows:
        by_event.setdefault(row.outbox_event_id, set()).add(row.endpoint_id)
    assert list(by_event.values()) == [{everything, returns_glob}, {everything, refunds}]
    assert all(r.status == "pending" and r.attempts == 0 for r in rows)


def test_enqueue_rolls_back_with_the_callers_transaction(engine: Engine) -> None:
    _endpoint(engine, "http://127.0.0.1:9/all")
    with Session(engine) as session:
        enqueue_event(session=session, event_type="decision.made", payload={}, return_id=None)
        session.rollback()
    with Session(engine) as session:
        assert session.exec(select(OutboxEvent)).all() == []
    assert _deliveries(engine) == []


def test_subscription_patterns() -> None:
    assert subscribes_to(endpoint_events=["*"], event_type="refund.released")
    assert subscribes_to(endpoint_events=["return.*"], event_type="return.approved")
    assert not subscribes_to(endpoint_events=["return.*"], event_type="refund.released")
    assert not subscribes_to(endpoint_events=["return.approved"], event_type="return.rejected")


# --- delivery -------------------------------------------------------------------------------


def test_delivery_posts_signed_event_document(
    engine: Engine, settings: Settings, receiver: Receiver
) -> None:
    _endpoint(engine, receiver.url)
    event_id = _enqueue(engine, "refund.released", return_id=7, amount_cents=1999, currency="EUR")
    assert deliver_due(engine=engine, settings=settings) == 1
    assert receiver.bad_signatures == 0 and receiver.processed == {event_id: 1}
    request = receiver.requests[0]
    document = json.loads(request["body"])
    assert document["id"] == event_id and document["type"] == "refund.released"
    assert document["data"] == {"return_id": 7, "amount_cents": 1999, "currency": "EUR"}
    assert document["created_at"].endswith("Z")
    assert request["headers"]["X-Inspection-Event-Id"] == event_id
    assert request["headers"]["Content-Type"] == "application/json"
    [row] = _deliveries(engine)
    assert (row.status, row.attempts, row.last_status_code) == ("delivered", 1, 200)
    assert row.delivered_at is not None and row.claim_token is None
    # Nothing is due any more: a second pass sends nothing.
    assert deliver_due(engine=engine, settings=settings) == 0
    assert len(receiver.requests) == 1


def test_retries_until_success_and_receiver_processes_each_event_once(
    engine: Engine, settings: Settings, receiver: Receiver
) -> None:
    receiver.fail_first = 2
    _endpoint(engine, receiver.url)
    first = _enqueue(engine, "return.approved", return_id=1)
    second = _enqueue(engine, "return.label_sent", return_id=1)
    now = utcnow()
    for _ in range(10):  # more passes than needed: extra passes must send nothing
        deliver_due(engine=engine, settings=settings, now=now)
        now += timedelta(seconds=settings.webhook.backoff_max_seconds + 1)
    assert receiver.processed == {first: 1, second: 1}
    assert receiver.bad_signatures == 0
    assert receiver.duplicates == 0  # nothing was resent after a 2xx
    assert len(receiver.requests) == 6  # two failures and one success per event
    # Every retry carries the same event id and body, freshly signed.
    bodies = {
        r["body"] for r in receiver.requests if r["headers"]["X-Inspection-Event-Id"] == first
    }
    assert len(bodies) == 1
    rows = _deliveries(engine)
    assert [(r.status, r.attempts) for r in rows] == [("delivered", 3), ("delivered", 3)]


def test_failed_attempt_schedules_exponential_backoff(
    engine: Engine, settings: Settings, receiver: Receiver
) -> None:
    receiver.fail_first = 100
    _endpoint(engine, receiver.url)
    _enqueue(engine)
    now = utcnow()
    waits = []
    for attempt in range(1, 4):
        assert deliver_due(engine=engine, settings=settings, now=now) == 1
        [row] = _deliveries(engine)
        assert row.attempts == attempt and row.status == "pending"
        assert row.last_status_code == 503 and "503" in (row.last_error or "")
        assert row.next_attempt_at is not None
        wait = (row.next_attempt_at - now).total_seconds()
        waits.append(wait)
        nominal = settings.webhook.backoff_base_seconds * 2**attempt
        assert nominal * (1 - JITTER_FRACTION) - 0.001 <= wait <= nominal + 0.001
        # Not due a moment before the scheduled time, due right at it.
        assert (
            deliver_due(engine=engine, settings=settings, now=now + timedelta(seconds=wait - 0.5))
            == 0
        )
        now = row.next_attempt_at
    assert waits[0] < waits[1] < waits[2]


def test_backoff_is_capped_and_jittered() -> None:
    rng = random.Random(7)
    samples = [
        backoff_seconds(attempts=3, base_seconds=2, max_seconds=3600, rng=rng) for _ in range(200)
    ]
    assert all(16 * (1 - JITTER_FRACTION) <= s <= 16 for s in samples)
    assert len({round(s, 6) for s in samples}) > 100  # spread, not a fixed value
    assert backoff_seconds(attempts=30, base_seconds=2, max_seconds=3600, rng=rng) <= 3600
    assert backoff_seconds(attempts=0, base_seconds=0, max_seconds=3600, rng=rng) == 0


def test_dead_letter_after_max_attempts(
    engine: Engine, settings: Settings, receiver: Receiver
) -> None:
    receiver.fail_first = 100
    receiver.status_when_failing = 500
    _endpoint(engine, receiver.url)
    _enqueue(engine)
    now = utcnow()
    for _ in range(settings.webhook.max_attempts + 3):
        deliver_due(engine=engine, settings=settings, now=now)
        now += timedelta(hours=2)
    [row] = _deliveries(engine)
    assert row.status == "dead"
    assert row.attempts == settings.webhook.max_attempts
    assert row.next_attempt_at is None
    assert "HTTP 500" in (row.last_error or "")
    assert len(receiver.requests) == settings.webhook.max_attempts
    assert receiver.processed == {}


def test_unreachable_endpoint_counts_as_failed_attempt(engine: Engine, settings: Settings) -> None:
    # Bind then close a socket to get a port nobody listens on.
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    _endpoint(engine, f"http://127.0.0.1:{port}/gone")
    _enqueue(engine)
    assert deliver_due(engine=engine, settings=settings) == 1
    [row] = _deliveries(engine)
    assert row.status == "pending" and row.attempts == 1
    assert row.last_status_code is None and "ConnectError" in (row.last_error or "")


def test_two_concurrent_workers_never_send_the_same_delivery(
    engine: Engine, settings: Settings, receiver: Receiver
) -> None:
    receiver.delay_seconds = 0.02  # keep the first worker busy while the second one claims
    _endpoint(engine, receiver.url)
    event_ids = [_enqueue(engine, "decision.made", n=n) for n in range(12)]
    barrier = threading.Barrier(3)
    counts: list[int] = []
    errors: list[BaseException] = []

    def run() -> None:
        barrier.wait()
        try:
            counts.append(deliver_due(engine=engine, settings=settings))
        except BaseException as exc:  # surfaced below: a worker must not crash on contention
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sum(counts) == 12
    assert len(receiver.requests) == 12  # no delivery was sent twice
    assert receiver.processed == dict.fromkeys(event_ids, 1)
    assert all(r.status == "delivered" and r.attempts == 1 for r in _deliveries(engine))


def test_stale_claim_of_a_crashed_worker_is_taken_over(
    engine: Engine, settings: Settings, receiver: Receiver
) -> None:
    _endpoint(engine, receiver.url)
    event_id = _enqueue(engine)
    crashed_at = utcnow() - timedelta(hours=1)
    with Session(engine) as session:
        row = session.exec(select(WebhookDelivery)).one()
        row.status, row.claim_token, row.claimed_at = "sending", "dead-worker", crashed_at
        session.add(row)
        session.commit()
    assert deliver_due(engine=engine, settings=settings) == 1
    assert receiver.processed == {event_id: 1}
    [row] = _deliveries(engine)
    assert row.status == "delivered"


def test_fresh_claim_of_another_worker_is_left_alone(
    engine: Engine, settings: Settings, receiver: Receiver
) -> None:
    _endpoint(engine, receiver.url)
    _enqueue(engine)
    with Session(engine) as session:
        row = session.exec(select(WebhookDelivery)).one()
        row.status, row.claim_token, row.claimed_at = "sending", "busy-worker", utcnow()
        session.add(row)
        session.commit()
    assert deliver_due(engine=engine, settings=settings) == 0
    assert receiver.requests == []


def test_worker_task_delivers_and_stops_cleanly(
    engine: Engine, settings: Settings, receiver: Receiver
) -> None:
    _endpoint(engine, receiver.url)
    event_id = _enqueue(engine)
    app = SimpleNamespace(state=SimpleNamespace(engine=engine, settings=settings))

    async def scenario() -> None:
        worker = start_delivery_worker(app=app)
        # Wait (bounded) for the background pass; the assertion is on the outcome, not speed.
        for _ in range(400):
            if receiver.processed:
                break
            await asyncio.sleep(0.025)
        await worker.stop()

    asyncio.run(scenario())
    assert receiver.processed == {event_id: 1}
    [row] = _deliveries(engine)
    assert row.status == "delivered"


def test_deliver_webhooks_command_runs_one_pass(
    engine: Engine, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from inspection.cli import app
    from inspection.settings import get_settings

    _endpoint(engine, receiver.url)
    event_id = _enqueue(engine)
    monkeypatch.setenv("INSPECTION_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["deliver-webhooks"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert "attempted 1 delivery(ies)" in result.output
    assert receiver.processed == {event_id: 1}


def test_timed_out_delivery_is_resent_and_the_receiver_deduplicates(
    engine: Engine, settings: Settings, receiver: Receiver
) -> None:
    # The receiver processes the event but answers after the sender gave up: the sender must
    # not count that as delivered, resends later, and the receiver's dedupe keeps it once.
    settings.webhook = settings.webhook.model_copy(update={"timeout_seconds": 0.2})
    receiver.delay_seconds = 1.0
    receiver.slow_requests = 1
    _endpoint(engine, receiver.url)
    event_id = _enqueue(engine)
    now = utcnow()
    assert deliver_due(engine=engine, settings=settings, now=now) == 1
    [row] = _deliveries(engine)
    assert row.status == "pending" and row.attempts == 1
    assert "Timeout" in (row.last_error or "")
    assert deliver_due(engine=engine, settings=settings, now=now + timedelta(minutes=5)) == 1
    [row] = _deliveries(engine)
    assert row.status == "delivered" and row.attempts == 2
    assert receiver.processed == {event_id: 1}
    assert receiver.duplicates == 1


def test_one_slow_endpoint_does_not_fail_the_others(
    engine: Engine, settings: Settings, receiver: Receiver
) -> None:
    import socket

    settings.webhook = settings.webhook.model_copy(update={"timeout_seconds": 0.3})
    # A listening socket that never answers: connect succeeds, the read times out.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        _endpoint(engine, f"http://127.0.0.1:{silent.getsockname()[1]}/hang")
        _endpoint(engine, receiver.url)
        event_id = _enqueue(engine)
        assert deliver_due(engine=engine, settings=settings) == 2
    finally:
        silent.close()
    statuses = sorted((r.endpoint_id, r.status) for r in _deliveries(engine))
    assert statuses == [(1, "pending"), (2, "delivered")]
    assert receiver.processed == {event_id: 1}


def test_no_database_transaction_is_held_while_posting(
    engine: Engine, settings: Settings, receiver: Receiver
) -> None:
    # While the sender waits for the receiver, another connection sees the committed claim and
    # can write: the HTTP call happens outside any transaction (a held SQLite write lock would
    # block this write until the sender's timeout and fail the delivery).
    settings.webhook = settings.webhook.model_copy(update={"timeout_seconds": 3.0})
    seen: list[str] = []

    def merchant_side_effect(event_id: str) -> None:
        with Session(engine) as session:
            row = session.exec(select(WebhookDelivery)).one()
            seen.append(row.status)
            endpoint = session.get(WebhookEndpoint, row.endpoint_id)
            assert endpoint is not None
            endpoint.created_by = f"touched-by-{event_id[:8]}"
            session.add(endpoint)
            session.commit()

    receiver.on_request = merchant_side_effect
    _endpoint(engine, receiver.url)
    event_id = _enqueue(engine)
    assert deliver_due(engine=engine, settings=settings) == 1
    assert seen == ["sending"]
    [row] = _deliveries(engine)
    assert row.status == "delivered"
    assert receiver.processed == {event_id: 1}
