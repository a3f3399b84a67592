"""Refund release: exactly one payment under 20 concurrent releases, retries answer the same
refund, a reused key on another return is 409, and the webhook adapter against a real local
HTTP receiver including a failed payment that is retried."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, col, select

from inspection.api.main import create_app
from inspection.returns.signing import verify_signature
from inspection.settings import RefundSettings, Settings
from inspection.store.models import DecisionRecord, Refund
from inspection.store.records import AuditEvent, OutboxEvent
from tests.fixtures.database import INTEGRATION, QA, STATION, bearer, return_in_status

CONCURRENT_RELEASES = 24
PAYMENT_SECRET = "test-payment-secret"


class PaymentReceiver:
    """A merchant payment service on localhost: records calls, can fail the first N."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.fail_next = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    failing = receiver.fail_next > 0
                    if failing:
                        receiver.fail_next -= 1
                    receiver.calls.append(
                        {"body": body, "headers": dict(self.headers), "failed": failing}
                    )
                    paid = sum(1 for c in receiver.calls if not c["failed"])
                if failing:
                    self.send_response(503)
                    self.end_headers()
                    return
                answer = json.dumps({"reference": f"pay-{paid}"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/refunds"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def successful(self) -> list[dict[str, Any]]:
        return [c for c in self.calls if not c["failed"]]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[PaymentReceiver]:
    server = PaymentReceiver()
    yield server
    server.close()


@pytest.fixture
def webhook_client(settings: Settings, receiver: PaymentReceiver) -> Iterator[TestClient]:
    settings.refund = RefundSettings(
        adapter="webhook",
        webhook_url=receiver.url,
        webhook_secret=PAYMENT_SECRET,
        timeout_seconds=5,
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def _refund_rows(client: TestClient, return_id: int) -> list[Refund]:
    with Session(client.app.state.engine) as session:  # type: ignore[attr-defined]
        return list(session.exec(select(Refund).where(Refund.return_id == return_id)).all())


def _events(client: TestClient, return_id: int, action: str) -> list[AuditEvent]:
    with Session(client.app.state.engine) as session:  # type: ignore[attr-defined]
        return list(
            session.exec(
                select(AuditEvent).where(
                    AuditEvent.return_id == return_id, AuditEvent.action == action
                )
            ).all()
        )


def test_concurrent_releases_pay_exactly_once(
    webhook_client: TestClient, receiver: PaymentReceiver
) -> None:
    ret, _ = return_in_status(webhook_client, "inspected")
    url = f"/v1/returns/{ret['id']}/refund"
    barrier = threading.Barrier(CONCURRENT_RELEASES)

    def release(_: int) -> tuple[int, dict[str, Any]]:
        barrier.wait()  # all threads fire together
        response = webhook_client.post(url, headers=STATION)
        return response.status_code, response.json()

    with ThreadPoolExecutor(max_workers=CONCURRENT_RELEASES) as pool:
        results = list(pool.map(release, range(CONCURRENT_RELEASES)))

    codes = sorted(code for code, _ in results)
    assert codes.count(201) == 1, codes
    assert set(codes) <= {200, 201}, [body for _, body in results]
    assert len({body["id"] for _, body in results}) == 1
    assert len(receiver.calls) == 1  # one payment call reached the merchant
    rows = _refund_rows(webhook_client, ret["id"])
    assert len(rows) == 1 and rows[0].status == "paid"
    assert rows[0].amount_cents == ret["decision"]["refund"]["amount_cents"]
    assert len(_events(webhook_client, ret["id"], "refund.released")) == 1
    final = webhook_client.get(f"/v1/returns/{ret['id']}", headers=STATION).json()
    assert final["status"] == "refunded"
    assert final["refund"]["adapter_reference"] == "pay-1"


def test_payment_call_is_signed_with_idempotency_key(
    webhook_client: TestClient, receiver: PaymentReceiver
) -> None:
    ret, _ = return_in_status(webhook_client, "inspected")

    response = webhook_client.post(
        f"/v1/returns/{ret['id']}/refund", headers={**STATION, "Idempotency-Key": "key-abc-1"}
    )

    assert response.status_code == 201, response.text
    call = receiver.calls[0]
    headers = {k.lower(): v for k, v in call["headers"].items()}
    assert headers["idempotency-key"] == "key-abc-1"
    assert verify_signature(
        secret=PAYMENT_SECRET,
        body=call["body"],
        timestamp=headers["x-inspection-timestamp"],
        signature=headers["x-inspection-signature"],
    )
    sent = json.loads(call["body"])
    assert sent["amount_cents"] == response.json()["amount_cents"]
    assert isinstance(sent["amount_cents"], int) and sent["currency"] == "EUR"


def test_failed_payment_stays_failed_then_retry_pays_once(
    webhook_client: TestClient, receiver: PaymentReceiver
) -> None:
    ret, _ = return_in_status(webhook_client, "inspected")
    receiver.fail_next = 1
    url = f"/v1/returns/{ret['id']}/refund"

    failed = webhook_client.post(url, headers=STATION)

    assert failed.status_code == 201, failed.text
    assert failed.json()["status"] == "failed"
    assert "503" in failed.json()["last_error"]
    state = webhook_client.get(f"/v1/returns/{ret['id']}", headers=STATION).json()
    assert state["status"] == "inspected"  # no money moved, nothing advanced
    assert "refund" in state["allowed_actions"]

    retried = webhook_client.post(url, headers=STATION)

    assert retried.status_code == 200, retried.text
    assert retried.json()["id"] == failed.json()["id"]
    assert retried.json()["status"] == "paid"
    again = webhook_client.post(url, headers=STATION)
    assert again.status_code == 200 and again.json()["status"] == "paid"
    assert len(receiver.successful()) == 1
    # Both attempts carried the same key: the merchant can deduplicate too.
    keys = {c["headers"].get("Idempotency-Key") for c in receiver.calls}
    assert len(keys) == 1
    rows = _refund_rows(webhook_client, ret["id"])
    assert len(rows) == 1 and rows[0].attempts == 2
    assert (
        webhook_client.get(f"/v1/returns/{ret['id']}", headers=STATION).json()["status"]
        == "refunded"
    )


def test_unreachable_payment_service_leaves_refund_failed(
    settings: Settings,
) -> None:
    settings.refund = RefundSettings(
        adapter="webhook", webhook_url="http://127.0.0.1:9/refunds", timeout_seconds=2
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        ret, _ = return_in_status(client, "inspected")
        response = client.post(f"/v1/returns/{ret['id']}/refund", headers=STATION)
        assert response.status_code == 201
        assert response.json()["status"] == "failed"
        assert "unreachable" in response.json()["last_error"]
        assert client.get(f"/v1/returns/{ret['id']}", headers=STATION).json()["status"] == (
            "inspected"
        )


def test_ledger_release_records_event_and_outbox(api_client: TestClient) -> None:
    ret, _ = return_in_status(api_client, "inspected")

    response = api_client.post(f"/v1/returns/{ret['id']}/refund", headers=INTEGRATION)

    assert response.status_code == 201, response.text
    refund = response.json()
    assert refund["adapter"] == "ledger" and refund["status"] == "paid"
    assert refund["adapter_reference"].startswith("ledger-")
    assert refund["idempotency_key"] == f"return-{ret['id']}-refund"
    with Session(api_client.app.state.engine) as session:  # type: ignore[attr-defined]
        types = session.exec(
            select(OutboxEvent.event_type)
            .where(OutboxEvent.return_id == ret["id"])
            .order_by(col(OutboxEvent.id))
        ).all()
    assert "refund.released" in types and types[-1] == "return.refunded"


def test_reused_key_on_another_return_is_409(api_client: TestClient) -> None:
    first, _ = return_in_status(api_client, "inspected")
    second, _ = return_in_status(api_client, "inspected")
    key = {"Idempotency-Key": "order-77-refund"}

    ok = api_client.post(f"/v1/returns/{first['id']}/refund", headers={**STATION, **key})
    reused = api_client.post(f"/v1/returns/{second['id']}/refund", headers={**STATION, **key})

    assert ok.status_code == 201
    assert reused.status_code == 409, reused.text
    assert reused.json()["error"]["code"] == "idempotency_key_reused"
    assert _refund_rows(api_client, second["id"]) == []


def test_customer_cannot_release_refund(api_client: TestClient) -> None:
    ret, token = return_in_status(api_client, "inspected")

    response = api_client.post(f"/v1/returns/{ret['id']}/refund", headers=bearer(token))

    assert response.status_code == 403
    assert _refund_rows(api_client, ret["id"]) == []


def test_refund_quote_follows_final_grade(api_client: TestClient) -> None:
    resell, _ = return_in_status(api_client, "inspected", grade="resell", price_cents=10000)
    refurbish, _ = return_in_status(api_client, "inspected", grade="refurbish", price_cents=10000)

    quotes = [
        api_client.get(f"/v1/returns/{r['id']}/refund-quote", headers=STATION).json()
        for r in (resell, refurbish)
    ]

    assert quotes[0]["grade"] == "resell" and quotes[1]["grade"] == "refurbish"
    assert quotes[0]["amount_cents"] >= quotes[1]["amount_cents"]
    assert all(isinstance(q["amount_cents"], int) for q in quotes)


def test_refund_left_pending_by_a_crash_is_recovered_once(api_client: TestClient) -> None:
    from datetime import timedelta

    from inspection.returns.refunds import STALE_PENDING, default_key, request_hash
    from inspection.store.models import utcnow

    ret, _ = return_in_status(api_client, "inspected")
    amount = ret["decision"]["refund"]["amount_cents"]
    with Session(api_client.app.state.engine) as session:  # type: ignore[attr-defined]
        # What a crash between "recorded pending" and "adapter answered" leaves behind.
        session.add(
            Refund(
                return_id=ret["id"],
                amount_cents=amount,
                currency="EUR",
                status="pending",
                idempotency_key=default_key(ret["id"]),
                request_hash=request_hash(return_id=ret["id"]),
                adapter="ledger",
                attempts=1,
                updated_at=utcnow() - STALE_PENDING - timedelta(seconds=1),
            )
        )
        session.commit()

    recovered = api_client.post(f"/v1/returns/{ret['id']}/refund", headers=STATION)
    again = api_client.post(f"/v1/returns/{ret['id']}/refund", headers=STATION)

    assert recovered.status_code == 200, recovered.text
    assert recovered.json()["status"] == "paid"
    assert again.json() == recovered.json()
    rows = _refund_rows(api_client, ret["id"])
    assert len(rows) == 1 and rows[0].attempts == 2
    assert len(_events(api_client, ret["id"], "refund.released")) == 1


def test_fresh_pending_refund_is_not_paid_again(api_client: TestClient) -> None:
    from inspection.returns.refunds import default_key, request_hash

    ret, _ = return_in_status(api_client, "inspected")
    with Session(api_client.app.state.engine) as session:  # type: ignore[attr-defined]
        session.add(
            Refund(
                return_id=ret["id"],
                amount_cents=100,
                currency="EUR",
                status="pending",
                idempotency_key=default_key(ret["id"]),
                request_hash=request_hash(return_id=ret["id"]),
                adapter="ledger",
                attempts=1,
            )
        )
        session.commit()

    response = api_client.post(f"/v1/returns/{ret['id']}/refund", headers=STATION)

    assert response.status_code == 200 and response.json()["status"] == "pending"
    assert _events(api_client, ret["id"], "refund.released") == []


def test_new_key_after_a_failed_payment_retries_the_same_refund(
    webhook_client: TestClient, receiver: PaymentReceiver
) -> None:
    ret, _ = return_in_status(webhook_client, "inspected")
    receiver.fail_next = 1
    url = f"/v1/returns/{ret['id']}/refund"

    failed = webhook_client.post(url, headers={**STATION, "Idempotency-Key": "first-try"})
    retried = webhook_client.post(url, headers={**STATION, "Idempotency-Key": "second-try"})

    assert failed.json()["status"] == "failed"
    assert retried.status_code == 200 and retried.json()["status"] == "paid"
    assert retried.json()["id"] == failed.json()["id"]
    # The merchant saw one key for this return, however many the client used.
    assert {c["headers"].get("Idempotency-Key") for c in receiver.calls} == {"first-try"}
    assert len(receiver.successful()) == 1
    assert len(_refund_rows(webhook_client, ret["id"])) == 1


def test_refund_held_at_inspection_waits_for_qa_not_the_station(api_client: TestClient) -> None:
    """Above the auto-approve limit the inspection decision is needs_review: the station
    cannot pay past it; QA approves (refund released once) or rejects (closed unpaid)."""
    for verdict in ("approve", "reject"):
        ret, _ = return_in_status(api_client, "inspected", price_cents=60_000, clear_review=False)
        rid = ret["id"]
        assert ret["decision"]["outcome"] == "needs_review", ret["decision"]
        assert "decide" in ret["allowed_actions"] and "refund" not in ret["allowed_actions"]

        held = api_client.post(f"/v1/returns/{rid}/refund", headers=STATION)
        assert held.status_code == 409, held.text
        error = held.json()["error"]
        assert error["code"] == "refund_on_hold" and "/decision" in error["hint"]
        assert "above_auto_approve_limit" in error["details"]["reason_codes"]
        by_station = api_client.post(
            f"/v1/returns/{rid}/decision",
            json={"outcome": "approve", "reason": "looks fine to me"},
            headers=STATION,
        )
        assert by_station.status_code == 403, by_station.text
        with Session(api_client.app.state.engine) as session:  # type: ignore[attr-defined]
            assert not session.exec(select(Refund).where(Refund.return_id == rid)).all()

        decided = api_client.post(
            f"/v1/returns/{rid}/decision",
            json={"outcome": verdict, "reason": "serial number matches the order"},
            headers=QA,
        )
        assert decided.status_code == 200, decided.text
        state = decided.json()
        assert state["status"] == "inspected"
        assert state["decision"]["outcome"] == (
            "approve_refund" if verdict == "approve" else "ineligible"
        )
        again = api_client.post(
            f"/v1/returns/{rid}/decision",
            json={"outcome": verdict, "reason": "second click"},
            headers=QA,
        )
        assert again.status_code == 409 and again.json()["error"]["code"] == "nothing_to_decide"
        refund = api_client.post(f"/v1/returns/{rid}/refund", headers=STATION)
        if verdict == "approve":
            assert refund.status_code == 201, refund.text
            assert refund.json()["amount_cents"] == ret["decision"]["refund"]["amount_cents"] > 0
            assert "refund" in state["allowed_actions"] and "close" not in state["allowed_actions"]
        else:
            assert refund.status_code == 409, refund.text
            assert refund.json()["error"]["code"] == "nothing_to_refund"
            assert state["allowed_actions"] == ["close"]
            closed = api_client.post(f"/v1/returns/{rid}/close", headers=STATION)
            assert closed.status_code == 200 and closed.json()["status"] == "closed"
        with Session(api_client.app.state.engine) as session:  # type: ignore[attr-defined]
            paid = session.exec(select(Refund).where(Refund.return_id == rid)).all()
        assert len(paid) == (1 if verdict == "approve" else 0)


def test_ineligible_inspection_decision_pays_nothing(api_client: TestClient) -> None:
    """An inspection decision of `ineligible` carries no quote; the refund must not fall back to
    the policy's price (that would pay a return the decision refused)."""
    ret, _ = return_in_status(api_client, "inspected")
    rid = ret["id"]
    engine = api_client.app.state.engine  # type: ignore[attr-defined]
    with Session(engine) as session:
        # what the engine writes when a policy rule fails at inspection (the policy changed
        # between the claim and the inspection, e.g. a shorter window for the category)
        session.add(
            DecisionRecord(
                return_id=rid,
                outcome="ineligible",
                stage="inspection",
                reason_codes=["outside_return_window"],
                messages=["returned 45 days after delivery; the window is 30 days"],
                refund_quote=None,
                policy_version="test",
                decided_by="model",
            )
        )
        session.commit()

    refused = api_client.post(f"/v1/returns/{rid}/refund", headers=STATION)

    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "nothing_to_refund"
    assert "close" in refused.json()["error"]["hint"]
    with Session(engine) as session:
        assert not session.exec(select(Refund).where(Refund.return_id == rid)).all()
    state = api_client.get(f"/v1/returns/{rid}", headers=STATION).json()
    assert state["allowed_actions"] == ["close"]
