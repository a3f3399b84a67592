"""Faults on the real server: kill -9 mid-upload and mid-refund, restart on the same database
and blobs, and a webhook receiver that is down for a while.

Shows: no acknowledged photo is lost, no refund is paid twice, no return is left without a way
forward, and every webhook event is delivered once (the receiver dedupes by event id) or sits
visibly in the dead-letter list.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from benchmarks.live_server import LiveServer, free_port
from tests.fixtures.database import ADMIN, INTEGRATION, STATION, bearer, order_payload
from tests.fixtures.images import make_photo_bytes

WAIT_S = 60.0


def _wait_for(what: str, predicate: Any, timeout: float = WAIT_S, interval: float = 0.1) -> Any:
    """Polls until `predicate()` is truthy; fails the test with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out waiting for {what}")


# --- local receivers -----------------------------------------------------------------------


@dataclass
class Receiver:
    """A local HTTP server recording what it receives; `handle` decides each answer."""

    port: int
    received: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    def answer(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        return 200, b'{"ok": true}'

    def start(self) -> Receiver:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k: v for k, v in self.headers.items()}
                with owner.lock:
                    owner.received.append((self.path, headers, body))
                status, payload = owner.answer(self.path, headers, body)
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the caller was killed while we waited: that is the point

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


class SlowPaymentService(Receiver):
    """A payment service that holds the first payment until the test lets it go."""

    def __init__(self, port: int) -> None:
        super().__init__(port=port)
        self.first_call = threading.Event()
        self.release = threading.Event()
        self.paid_keys: set[str] = set()

    def answer(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        if not self.first_call.is_set():
            self.first_call.set()
            self.release.wait(WAIT_S)
        # Like a real PSP: one payment per Idempotency-Key, a repeat gets the same answer.
        key = headers.get("Idempotency-Key", "")
        with self.lock:
            self.paid_keys.add(key)
        return 200, json.dumps({"reference": f"psp-{key}"}).encode()


# --- the server under test -----------------------------------------------------------------


@pytest.fixture
def payment_service() -> Iterator[SlowPaymentService]:
    service = SlowPaymentService(free_port())
    service.start()
    yield service
    service.release.set()
    service.stop()


@pytest.fixture
def live_server(
    tmp_path: Path, models_dir: Path, payment_service: SlowPaymentService
) -> Iterator[LiveServer]:
    """The real service (uvicorn subprocess) on a SQLite file, paying through `payment_service`;
    webhook retries are fast so a test sees them within seconds."""
    server = LiveServer(
        workdir=tmp_path / "server",
        models_dir=models_dir,
        env_overrides={
            "INSPECTION_REFUND_ADAPTER": "webhook",
            "INSPECTION_REFUND_WEBHOOK_URL": f"http://127.0.0.1:{payment_service.port}/pay",
            "INSPECTION_REFUND_TIMEOUT_SECONDS": "60",
            "INSPECTION_WEBHOOK_WORKER_INTERVAL_SECONDS": "0.2",
            "INSPECTION_WEBHOOK_BACKOFF_BASE_SECONDS": "0.1",
            "INSPECTION_WEBHOOK_BACKOFF_MAX_SECONDS": "0.5",
            "INSPECTION_WEBHOOK_MAX_ATTEMPTS": "6",
            "INSPECTION_WEBHOOK_TIMEOUT_SECONDS": "2",
        },
    )
    server.start()
    yield server
    server.stop()


def _client(server: LiveServer) -> httpx.Client:
    return httpx.Client(base_url=server.base_url, timeout=WAIT_S)


def _open_return(client: httpx.Client, *, price_cents: int = 4999) -> tuple[dict[str, Any], str]:
    order = client.post(
        "/v1/orders", json=order_payload(price_cents=price_cents), headers=INTEGRATION
    )
    assert order.status_code == 201, order.text
    body = order.json()
    opened = client.post(
        "/v1/returns",
        json={
            "order_number": body["order_number"],
            "email": body["customer"]["email"],
            "items": [{"order_line_id": body["lines"][0]["id"], "reason_code": "defective"}],
        },
    )
    assert opened.status_code == 201, opened.text
    return opened.json()["return"], opened.json()["customer_token"]


def _photo_rows(database: Path, return_id: int) -> list[tuple[int, str, str]]:
    with sqlite3.connect(database) as conn:
        return list(
            conn.execute(
                "SELECT id, sha256, blob_key FROM photos WHERE return_id = ? ORDER BY id",
                (return_id,),
            )
        )


# --- kill -9 during a photo upload ---------------------------------------------------------


def test_kill_during_upload_loses_no_acknowledged_photo(live_server: LiveServer) -> None:
    client = _client(live_server)
    ret, token = _open_return(client)
    photos = [make_photo_bytes(width=2400, height=1800, seed=100 + i) for i in range(12)]
    acknowledged: dict[int, bytes] = {}
    in_flight = threading.Event()
    stop = threading.Event()

    def upload_loop() -> None:
        with _client(live_server) as uploader:
            for data in photos:
                if stop.is_set():
                    return
                in_flight.set()
                try:
                    response = uploader.post(
                        f"/v1/returns/{ret['id']}/photos",
                        files=[("files", ("p.jpg", data, "image/jpeg"))],
                        data={"source": "customer"},
                        headers=bearer(token),
                    )
                except httpx.HTTPError:
                    return  # the server died under this request: it was never acknowledged
                if response.status_code == 201:
                    acknowledged[response.json()["photos"][0]["id"]] = data

    worker = threading.Thread(target=upload_loop)
    worker.start()
    _wait_for("two acknowledged uploads", lambda: len(acknowledged) >= 2)
    in_flight.clear()
    _wait_for("the next upload to be on its way", in_flight.is_set)
    time.sleep(0.05)  # the request body is being received or processed
    live_server.kill()
    stop.set()
    worker.join(WAIT_S)
    assert len(acknowledged) >= 2

    live_server.start()
    with _client(live_server) as after:
        state = after.get(f"/v1/returns/{ret['id']}", headers=STATION)
        assert state.status_code == 200, state.text
        listed = {p["id"] for p in state.json()["photos"]}
        # Every acknowledged photo is there, byte for byte.
        for photo_id, data in acknowledged.items():
            assert photo_id in listed
            image = after.get(f"/v1/photos/{photo_id}/image", headers=STATION)
            assert image.status_code == 200
            assert image.content == data
        # And nothing half-written: every stored photo row has its blob and is readable.
        rows = _photo_rows(live_server.database_path, ret["id"])
        for photo_id, sha256, blob_key in rows:
            image = after.get(f"/v1/photos/{photo_id}/image", headers=STATION)
            assert image.status_code == 200, (photo_id, image.text)
            assert hashlib.sha256(image.content).hexdigest() == sha256, blob_key
        # The return goes on: another upload and the submission work.
        more = after.post(
            f"/v1/returns/{ret['id']}/photos",
            files=[("files", ("p.jpg", photos[-1], "image/jpeg"))],
            data={"source": "customer"},
            headers=bearer(token),
        )
        assert more.status_code == 201, more.text
        submitted = after.post(f"/v1/returns/{ret['id']}/submit", headers=bearer(token))
        assert submitted.status_code == 200, submitted.text


# --- kill -9 during a refund release -------------------------------------------------------


_PHOTO_SEEDS = itertools.count(7, 10)


def _to_inspected(client: httpx.Client) -> dict[str, Any]:
    """Walks a return through the lifecycle to `inspected` (refund allowed)."""
    ret, token = _open_return(client, price_cents=12_000)
    # Photos of its own (the same photos on every return is photo reuse, held for review).
    first = next(_PHOTO_SEEDS)
    photo = make_photo_bytes(width=800, height=600, seed=first)
    rid = ret["id"]
    # Policies ask for several photos of some categories; three covers them all.
    customer_photos = [make_photo_bytes(width=800, height=600, seed=first + s) for s in range(3)]
    up = client.post(
        f"/v1/returns/{rid}/photos",
        files=[("files", (f"c{i}.jpg", p, "image/jpeg")) for i, p in enumerate(customer_photos)],
        data={"source": "customer"},
        headers=bearer(token),
    )
    assert up.status_code == 201, up.text
    submitted = client.post(f"/v1/returns/{rid}/submit", headers=bearer(token))
    assert submitted.status_code == 200, submitted.text
    state = submitted.json()
    if state["status"] == "needs_review":
        state = client.post(
            f"/v1/returns/{rid}/decision",
            json={"outcome": "approve", "reason": "photos match the claim"},
            headers=ADMIN,
        ).json()
    assert state["status"] == "label_sent", state
    station = client.post(
        f"/v1/returns/{rid}/photos",
        files=[("files", ("s.jpg", photo, "image/jpeg"))],
        data={"source": "station"},
        headers=STATION,
    )
    assert station.status_code == 201, station.text
    assert client.post(f"/v1/returns/{rid}/receive", headers=STATION).status_code == 200
    inspected = client.post(
        f"/v1/returns/{rid}/inspection",
        json={"grade": "resell", "reason": "no damage on the bench"},
        headers=STATION,
    )
    assert inspected.status_code == 200, inspected.text
    assert inspected.json()["status"] == "inspected"
    if inspected.json()["decision"]["outcome"] == "needs_review":
        # fraud signals held the refund: a reviewer clears it, as QA would
        inspected = client.post(
            f"/v1/returns/{rid}/decision",
            json={"outcome": "approve", "reason": "reviewed on the bench"},
            headers=ADMIN,
        )
        assert inspected.status_code == 200, inspected.text
    return inspected.json()


def _refund_rows(database: Path, return_id: int) -> list[tuple[int, str, str]]:
    with sqlite3.connect(database) as conn:
        return list(
            conn.execute(
                "SELECT id, status, idempotency_key FROM refunds WHERE return_id = ?", (return_id,)
            )
        )


def test_kill_during_refund_never_pays_twice_and_the_return_can_finish(
    live_server: LiveServer, payment_service: SlowPaymentService
) -> None:
    client = _client(live_server)
    ret = _to_inspected(client)
    rid = ret["id"]
    key = f"refund-{rid}-attempt"
    outcome: dict[str, Any] = {}

    def release() -> None:
        try:
            outcome["response"] = client.post(
                f"/v1/returns/{rid}/refund", headers={**STATION, "Idempotency-Key": key}
            )
        except httpx.HTTPError as exc:
            outcome["error"] = exc

    caller = threading.Thread(target=release)
    caller.start()
    # The service is now waiting for the payment service's answer: kill it there.
    assert payment_service.first_call.wait(WAIT_S)
    live_server.kill()
    payment_service.release.set()
    caller.join(WAIT_S)
    assert "error" in outcome  # the caller never got an answer

    live_server.start()
    with _client(live_server) as after:
        retried = after.post(
            f"/v1/returns/{rid}/refund", headers={**STATION, "Idempotency-Key": key}
        )
        assert retried.status_code in (200, 201), retried.text
        rows = _refund_rows(live_server.database_path, rid)
        assert len(rows) == 1, rows
        if retried.json()["status"] == "pending":
            # The outcome of the interrupted call is unknown, so the refund waits before it is
            # retried; move its clock past that wait instead of sleeping for minutes.
            with sqlite3.connect(live_server.database_path) as conn:
                old = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S.%f")
                conn.execute("UPDATE refunds SET updated_at = ? WHERE return_id = ?", (old, rid))
            retried = after.post(
                f"/v1/returns/{rid}/refund", headers={**STATION, "Idempotency-Key": key}
            )
            assert retried.status_code in (200, 201), retried.text
        assert retried.json()["status"] == "paid", retried.json()
        # A different key (a double click from another screen) gets the same refund, no payment.
        other = after.post(
            f"/v1/returns/{rid}/refund", headers={**STATION, "Idempotency-Key": "x-2"}
        )
        assert other.status_code == 200 and other.json()["id"] == retried.json()["id"]

        rows = _refund_rows(live_server.database_path, rid)
        assert len(rows) == 1 and rows[0][1] == "paid", rows
        # Every call the payment service got carried the one key: it paid once.
        assert payment_service.paid_keys == {key}
        state = after.get(f"/v1/returns/{rid}", headers=STATION).json()
        assert state["status"] == "refunded"
        assert "close" in state["allowed_actions"]
        closed = after.post(f"/v1/returns/{rid}/close", headers=STATION)
        assert closed.status_code == 200 and closed.json()["status"] == "closed"


# --- webhook receiver down, then back ------------------------------------------------------


class WebhookReceiver(Receiver):
    """Answers 2xx and dedupes by X-Inspection-Event-Id, like a well-behaved integrator."""

    def event_ids(self) -> Counter[str]:
        with self.lock:
            return Counter(h.get("X-Inspection-Event-Id", "") for _, h, _ in self.received)


def _deliveries(client: httpx.Client, status: str | None = None) -> list[dict[str, Any]]:
    params: dict[str, str | int] = {"limit": 500}
    if status:
        params["status"] = status
    response = client.get("/v1/webhooks/deliveries", params=params, headers=INTEGRATION)
    assert response.status_code == 200, response.text
    return list(response.json()["data"])


def test_webhooks_survive_a_receiver_outage_and_a_server_kill(live_server: LiveServer) -> None:
    client = _client(live_server)
    receiver = WebhookReceiver(port=free_port())
    secret = "fault-test-secret-0123456789"
    registered = client.post(
        "/v1/webhooks",
        json={"url": f"http://127.0.0.1:{receiver.port}/hook", "events": ["*"], "secret": secret},
        headers=INTEGRATION,
    )
    assert registered.status_code == 201, registered.text
    endpoint_id = registered.json()["id"]
    for _ in range(3):
        _open_return(client)

    def mine() -> list[dict[str, Any]]:
        return [d for d in _deliveries(client) if d["endpoint_id"] == endpoint_id]

    # Receiver down: deliveries fail and stay queued with the error visible.
    _wait_for(
        "failed attempts while the receiver is down",
        lambda: mine() and all(d["attempts"] >= 1 and d["last_error"] for d in mine()),
    )
    expected = {d["event_id"] for d in mine()}
    live_server.kill()
    receiver.start()
    try:
        live_server.start()
        with _client(live_server) as after:

            def settled() -> list[dict[str, Any]]:
                rows = [d for d in _deliveries(after) if d["endpoint_id"] == endpoint_id]
                return rows if all(d["status"] in ("delivered", "dead") for d in rows) else []

            rows = _wait_for("every delivery delivered or dead-lettered", settled)
    finally:
        receiver.stop()

    delivered = {d["event_id"] for d in rows if d["status"] == "delivered"}
    dead = {d["event_id"] for d in rows if d["status"] == "dead"}
    assert expected <= delivered | dead
    seen = receiver.event_ids()
    # Delivered once after dedupe: every delivered event arrived, none that was not sent.
    assert set(seen) == delivered, (seen, delivered)
    # Each body is signed with the endpoint's secret over "<timestamp>.<body>".
    for _, headers, body in receiver.received:
        stamp = headers["X-Inspection-Timestamp"]
        digest = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
        assert headers["X-Inspection-Signature"] == f"sha256={digest}"
    # Anything dead-lettered is listed in the dead-letter queue with its error.
    if dead:
        listed = {d["event_id"]: d for d in _deliveries(client, "dead")}
        assert all(listed[e]["last_error"] for e in dead)


# --- concurrent writers ----------------------------------------------------------------------


def test_concurrent_refunds_and_uploads_never_answer_500(
    live_server: LiveServer, payment_service: SlowPaymentService
) -> None:
    """SQLite has one writer: concurrent refunds and uploads must queue, never fail with 500."""
    payment_service.first_call.set()  # no holding back in this test
    client = _client(live_server)
    inspected = [_to_inspected(client)["id"] for _ in range(3)]
    opened = [_open_return(client) for _ in range(3)]
    photo = make_photo_bytes(width=1600, height=1200, seed=21)
    statuses: list[tuple[str, int, str]] = []
    lock = threading.Lock()
    barrier = threading.Barrier(len(inspected) * 2 + len(opened))

    def call(kind: str, method: str, path: str, **kwargs: Any) -> None:
        with _client(live_server) as own:
            barrier.wait(WAIT_S)
            response = own.request(method, path, **kwargs)
        with lock:
            statuses.append((kind, response.status_code, response.text[:300]))

    threads = []
    for rid in inspected:
        for _ in range(2):  # a double click on "Release refund"
            threads.append(
                threading.Thread(
                    target=call,
                    args=("refund", "POST", f"/v1/returns/{rid}/refund"),
                    kwargs={"headers": STATION},
                )
            )
    for ret, token in opened:
        threads.append(
            threading.Thread(
                target=call,
                args=("upload", "POST", f"/v1/returns/{ret['id']}/photos"),
                kwargs={
                    "files": [("files", ("p.jpg", photo, "image/jpeg"))],
                    "data": {"source": "customer"},
                    "headers": bearer(token),
                },
            )
        )
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT_S * 2)
    assert len(statuses) == len(threads)
    assert all(code < 500 for _, code, _ in statuses), [(k, c, t[:120]) for k, c, t in statuses]
    assert sorted(code for kind, code, _ in statuses if kind == "refund") == [
        200,
        200,
        200,
        201,
        201,
        201,
    ]
    for rid in inspected:
        rows = _refund_rows(live_server.database_path, rid)
        assert len(rows) == 1 and rows[0][1] == "paid", rows
