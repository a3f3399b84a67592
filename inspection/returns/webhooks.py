"""Webhook delivery worker: claims due deliveries, POSTs signed events, backs off, dead-letters.

One pass (`deliver_due`) runs three short steps so that no HTTP call ever happens inside a
database transaction:
1. claim: due rows move `pending -> sending` with a fresh claim token, atomically (PostgreSQL
   selects with `FOR UPDATE SKIP LOCKED`; both databases then update only rows still `pending`,
   so two workers never claim the same delivery);
2. send: POST `{id, type, created_at, data}` with the event id, timestamp and HMAC signature
   (a few deliveries at a time, so one endpoint hanging until the timeout stalls no others);
3. record: a 2xx marks the delivery `delivered`; anything else counts an attempt and schedules
   the next one with exponential backoff and jitter, or marks it `dead` after `max_attempts`.
   The record step only touches rows still holding this pass's claim token.

Delivery is at least once: a crash between a receiver's 2xx and step 3 resends later, so
receivers deduplicate on `X-Inspection-Event-Id`. The sender never marks a delivery delivered
without a 2xx. Events of one return may arrive out of order (retries); order by `created_at`.
A claim left `sending` by a crashed worker is taken over once it is older than a few timeouts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import Engine, update
from sqlmodel import Session, col, or_, select

from inspection.observability import WEBHOOK_DELIVERIES
from inspection.returns.signing import sign_payload
from inspection.settings import Settings, WebhookSettings
from inspection.store.db import SQLITE_BEGIN_OPTION
from inspection.store.records import OutboxEvent, WebhookDelivery, WebhookEndpoint, utcnow

log = logging.getLogger(__name__)

# Deliveries claimed per pass; small so one slow endpoint delays few others.
CLAIM_BATCH = 20
# Fraction of the backoff removed at random, so endpoints that failed together do not retry in
# lockstep (a retry storm after an outage).
JITTER_FRACTION = 0.2
# A `sending` claim older than this is taken to belong to a crashed worker and is reclaimed.
# It must exceed the HTTP timeout by a wide margin; it is computed from it below.
STALE_CLAIM_FACTOR = 4
ERROR_TEXT_LIMIT = 1000
# Deliveries of one pass sent at the same time.
SEND_CONCURRENCY = 4


def backoff_seconds(
    *, attempts: int, base_seconds: float, max_seconds: float, rng: random.Random | None = None
) -> float:
    """Delay before the next attempt: `base * 2**attempts`, capped, minus up to 20% jitter."""
    delay = min(max_seconds, base_seconds * (2**attempts))
    jitter = (rng or random).random() * JITTER_FRACTION
    return delay * (1.0 - jitter)


def event_body(*, event: OutboxEvent) -> bytes:
    """The exact bytes POSTed for an event (and signed)."""
    created = event.created_at.isoformat().replace("+00:00", "Z")
    document = {
        "id": event.event_id,
        "type": event.event_type,
        "created_at": created,
        "data": event.payload,
    }
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


@dataclass(frozen=True)
class _Claimed:
    delivery_id: int
    claim_token: str
    attempts: int
    url: str
    secret: str
    event_id: str
    body: bytes


def _claim(*, engine: Engine, now: datetime, stale_before: datetime) -> list[_Claimed]:
    token = uuid.uuid4().hex
    due = or_(
        (col(WebhookDelivery.status) == "pending") & (col(WebhookDelivery.next_attempt_at) <= now),
        (col(WebhookDelivery.status) == "sending")
        & (col(WebhookDelivery.claimed_at) < stale_before),
    )
    # A deactivated endpoint gets nothing, even a delivery queued just before it was switched off.
    active = select(WebhookEndpoint.id).where(col(WebhookEndpoint.active))
    due = due & col(WebhookDelivery.endpoint_id).in_(active)
    # SQLite: take the write lock at BEGIN; a deferred read-then-write transaction would fail
    # with "database is locked" when another worker commits between our read and our write.
    claim_engine = (
        engine.execution_options(**{SQLITE_BEGIN_OPTION: "IMMEDIATE"})
        if engine.dialect.name == "sqlite"
        else engine
    )
    with Session(claim_engine) as session:
        query = (
            select(WebhookDelivery.id, WebhookDelivery.status)
            .where(due)
            .order_by(col(WebhookDelivery.next_attempt_at), col(WebhookDelivery.id))
            .limit(CLAIM_BATCH)
        )
        if engine.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        candidates = session.exec(query).all()
        claimed_ids: list[int] = []
        for delivery_id, status in candidates:
            # Compare-and-set on the status (and the stale claim) keeps the claim atomic on
            # SQLite, where SKIP LOCKED does not exist.
            condition = col(WebhookDelivery.id) == delivery_id
            if status == "pending":
                condition &= col(WebhookDelivery.status) == "pending"
            else:
                condition &= (col(WebhookDelivery.status) == "sending") & (
                    col(WebhookDelivery.claimed_at) < stale_before
                )
            result = session.execute(
                update(WebhookDelivery)
                .where(condition)
                .values(status="sending", claim_token=token, claimed_at=now, updated_at=now)
            )
            if result.rowcount == 1 and delivery_id is not None:  # type: ignore[attr-defined]
                claimed_ids.append(delivery_id)
        session.commit()
        if not claimed_ids:
            return []
        rows = session.exec(
            select(WebhookDelivery, OutboxEvent, WebhookEndpoint)
            .join(OutboxEvent, col(OutboxEvent.id) == WebhookDelivery.outbox_event_id)
            .join(WebhookEndpoint, col(WebhookEndpoint.id) == WebhookDelivery.endpoint_id)
            .where(col(WebhookDelivery.id).in_(claimed_ids))
            .order_by(col(WebhookDelivery.id))
        ).all()
        return [
            _Claimed(
                delivery_id=delivery.id or 0,
                claim_token=token,
                attempts=delivery.attempts,
                url=endpoint.url,
                secret=endpoint.secret,
                event_id=event.event_id,
                body=event_body(event=event),
            )
            for delivery, event, endpoint in rows
        ]


def _send(
    *, client: httpx.Client, item: _Claimed, now: datetime
) -> tuple[bool, int | None, str | None]:
    timestamp = int(now.timestamp())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "returns-inspection-webhooks/1",
        "X-Inspection-Event-Id": item.event_id,
        "X-Inspection-Timestamp": str(timestamp),
        "X-Inspection-Signature": sign_payload(
            secret=item.secret, body=item.body, timestamp=timestamp
        ),
    }
    try:
        response = client.post(item.url, content=item.body, headers=headers)
    except httpx.HTTPError as exc:
        return False, None, f"{type(exc).__name__}: {exc}"[:ERROR_TEXT_LIMIT]
    if 200 <= response.status_code < 300:
        return True, response.status_code, None
    return False, response.status_code, f"HTTP {response.status_code}: {response.text[:200]}"


def _record(
    *,
    engine: Engine,
    item: _Claimed,
    ok: bool,
    status_code: int | None,
    error: str | None,
    now: datetime,
    config: WebhookSettings,
    rng: random.Random | None,
) -> str:
    attempts = item.attempts + 1
    values: dict[str, Any] = {
        "attempts": attempts,
        "last_status_code": status_code,
        "claim_token": None,
        "claimed_at": None,
        "updated_at": now,
    }
    if ok:
        outcome = "delivered"
        values.update(status="delivered", delivered_at=now, next_attempt_at=None, last_error=None)
    elif attempts >= config.max_attempts:
        outcome = "dead"
        values.update(status="dead", next_attempt_at=None, last_error=error)
    else:
        outcome = "retry"
        delay = backoff_seconds(
            attempts=attempts,
            base_seconds=config.backoff_base_seconds,
            max_seconds=config.backoff_max_seconds,
            rng=rng,
        )
        values.update(
            status="pending", next_attempt_at=now + timedelta(seconds=delay), last_error=error
        )
    with Session(engine) as session:
        result = session.execute(
            update(WebhookDelivery)
            .where(col(WebhookDelivery.id) == item.delivery_id)
            .where(col(WebhookDelivery.claim_token) == item.claim_token)
            .values(**values)
        )
        session.commit()
    if result.rowcount != 1:  # type: ignore[attr-defined]
        # Our claim went stale and another worker took the row over; its result stands.
        log.warning("webhook delivery %s claim lost before recording", item.delivery_id)
        return "lost_claim"
    return outcome


def deliver_due(
    *,
    engine: Engine,
    settings: Settings,
    now: datetime | None = None,
    client: httpx.Client | None = None,
    rng: random.Random | None = None,
) -> int:
    """Runs one delivery pass; returns how many deliveries were attempted."""
    config = settings.webhook
    current = now or utcnow()
    stale_before = current - timedelta(seconds=config.timeout_seconds * STALE_CLAIM_FACTOR + 30)
    claimed = _claim(engine=engine, now=current, stale_before=stale_before)
    if not claimed:
        return 0
    own_client = client is None
    http = client or httpx.Client(timeout=config.timeout_seconds, follow_redirects=False)

    def attempt(item: _Claimed) -> None:
        # Sign and schedule from the moment of sending (a pass can take a while), unless the
        # caller pinned the clock.
        sent_at = now or utcnow()
        ok, status_code, error = _send(client=http, item=item, now=sent_at)
        outcome = _record(
            engine=engine,
            item=item,
            ok=ok,
            status_code=status_code,
            error=error,
            now=sent_at,
            config=config,
            rng=rng,
        )
        WEBHOOK_DELIVERIES.labels(result=outcome).inc()
        log.info(
            "webhook delivery %s",
            outcome,
            extra={"ctx_delivery_id": item.delivery_id, "ctx_status_code": status_code},
        )

    try:
        # A few sends in parallel, so one slow endpoint (up to the timeout) does not hold up
        # every other delivery of the pass. Events carry no ordering guarantee anyway.
        with ThreadPoolExecutor(max_workers=min(SEND_CONCURRENCY, len(claimed))) as pool:
            for future in [pool.submit(attempt, item) for item in claimed]:
                future.result()
    finally:
        if own_client:
            http.close()
    return len(claimed)


class DeliveryWorker:
    """Runs `deliver_due` in a thread every `worker_interval_seconds` until stopped."""

    def __init__(self, *, engine: Engine, settings: Settings) -> None:
        self._engine = engine
        self._settings = settings
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Starts the loop on the running event loop."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="webhook-delivery")

    async def _run(self) -> None:
        interval = self._settings.webhook.worker_interval_seconds
        while not self._stopping.is_set():
            try:
                # The pass does blocking HTTP and database work: keep it off the event loop.
                sent = await asyncio.to_thread(
                    deliver_due, engine=self._engine, settings=self._settings
                )
            except Exception:  # a failed pass must not kill the worker; the next pass retries
                log.exception("webhook delivery pass failed")
                sent = 0
            if sent:
                continue  # more may be due right away
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=interval)

    async def stop(self) -> None:
        """Asks the loop to stop and waits for the pass in flight to finish."""
        self._stopping.set()
        if self._task is not None:
            await self._task
            self._task = None


def start_delivery_worker(*, app: Any) -> DeliveryWorker:
    """Starts the delivery worker for an app whose state holds `engine` and `settings`."""
    worker = DeliveryWorker(engine=app.state.engine, settings=app.state.settings)
    worker.start()
    return worker
