"""Transactional outbox: domain events written with the change, fanned out to endpoints at once.

`enqueue_event` runs in the caller's transaction and creates one `WebhookDelivery` per active
endpoint subscribed to the event type, so an event and its deliveries commit (or roll back)
together with the change. Fan-out at enqueue time means an endpoint receives the events created
after it was registered, never a backlog from before. The same module manages endpoints
(register, deactivate) and deliveries (list, retry) for the webhooks API.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import func, update
from sqlmodel import Session, col, select

from inspection.errors import Conflict, InvalidInput, NotFound
from inspection.returns.audit import begin_write, jsonable, record_event
from inspection.store.records import OutboxEvent, WebhookDelivery, WebhookEndpoint, utcnow

WILDCARD = "*"


def subscribes_to(*, endpoint_events: list[str], event_type: str) -> bool:
    """True when an endpoint's subscription covers the event type (`*` or `return.*` globs)."""
    for pattern in endpoint_events:
        if pattern in (WILDCARD, event_type):
            return True
        if pattern.endswith(".*") and event_type.startswith(pattern[:-1]):
            return True
    return False


def new_event_id() -> str:
    """A public, unguessable event id (`evt_<32 hex>`)."""
    return f"evt_{uuid.uuid4().hex}"


def new_webhook_secret() -> str:
    """A fresh signing secret for an endpoint that did not bring its own."""
    return f"whsec_{secrets.token_urlsafe(32)}"


def enqueue_event(
    *,
    session: Session,
    event_type: str,
    payload: dict[str, Any],
    return_id: int | None,
    at: datetime | None = None,
) -> OutboxEvent:
    """Adds an event and its deliveries to the caller's transaction (flushed, not committed)."""
    when = at or utcnow()
    event = OutboxEvent(
        event_id=new_event_id(),
        event_type=event_type,
        return_id=return_id,
        payload=jsonable(payload),
        created_at=when,
    )
    session.add(event)
    session.flush()
    assert event.id is not None
    endpoints = session.exec(select(WebhookEndpoint).where(col(WebhookEndpoint.active))).all()
    for endpoint in endpoints:
        if endpoint.id is None or not subscribes_to(
            endpoint_events=list(endpoint.events), event_type=event_type
        ):
            continue
        session.add(
            WebhookDelivery(
                outbox_event_id=event.id,
                endpoint_id=endpoint.id,
                status="pending",
                next_attempt_at=when,
                created_at=when,
                updated_at=when,
            )
        )
    session.flush()
    return event


# --- endpoints and deliveries, as the webhooks API manages them ------------------------------

# Event types the service emits; subscriptions may also use "*" or "<prefix>.*".
EVENT_PREFIXES = ("return.", "refund.", "decision.")
FIXED_EVENT_TYPES = ("refund.released", "decision.made")


def known_event_type(pattern: str) -> bool:
    """Whether a subscription pattern can ever match an event this service emits."""
    # Imported here: the lifecycle imports this module to enqueue its events.
    from inspection.returns.lifecycle import STATUSES

    if pattern == WILDCARD:
        return True
    if pattern.endswith(".*"):
        return any(pattern[:-1] == prefix for prefix in EVENT_PREFIXES)
    return pattern in FIXED_EVENT_TYPES or pattern in {f"return.{s}" for s in STATUSES}


def register_endpoint(
    *, session: Session, url: str, events: list[str], secret: str | None, actor: str
) -> WebhookEndpoint:
    """Registers a webhook endpoint (audited on the system chain) and commits it."""

    unknown = [e for e in events if not known_event_type(e)]
    if unknown:
        raise InvalidInput(
            f"unknown event types: {', '.join(unknown)}",
            hint='subscribe to "*", "return.*", "return.<status>", "refund.released" or '
            '"decision.made"',
            code="unknown_event_type",
        )
    begin_write(session=session)
    endpoint = WebhookEndpoint(
        url=url,
        events=sorted(set(events)),
        secret=secret or new_webhook_secret(),
        created_by=actor,
    )
    session.add(endpoint)
    session.flush()
    record_event(
        session=session,
        return_id=None,
        actor=actor,
        action="webhook.registered",
        before=None,
        # Never the secret: the audit log is read by more people than the integration owner.
        after={"endpoint_id": endpoint.id, "url": url, "events": endpoint.events},
    )
    session.commit()
    session.refresh(endpoint)
    return endpoint


def deactivate_endpoint(*, session: Session, endpoint_id: int, actor: str) -> WebhookEndpoint:
    """Stops deliveries to an endpoint; its pending deliveries become dead (retryable later)."""
    begin_write(session=session)
    endpoint = session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None:
        raise NotFound(f"no webhook endpoint {endpoint_id}", hint="list them with GET /v1/webhooks")
    if not endpoint.active:
        return endpoint  # deactivating twice is a no-op, not an error
    now = utcnow()
    endpoint.active = False
    session.add(endpoint)
    result = session.execute(
        update(WebhookDelivery)
        .where(
            col(WebhookDelivery.endpoint_id) == endpoint_id,
            col(WebhookDelivery.status) == "pending",
        )
        .values(
            status="dead",
            next_attempt_at=None,
            last_error="endpoint deactivated",
            updated_at=now,
        )
    )
    record_event(
        session=session,
        return_id=None,
        actor=actor,
        action="webhook.deactivated",
        before={"endpoint_id": endpoint_id, "active": True},
        after={
            "endpoint_id": endpoint_id,
            "active": False,
            "pending_dead_lettered": int(result.rowcount or 0),  # type: ignore[attr-defined]
        },
    )
    session.commit()
    session.refresh(endpoint)
    return endpoint


def list_endpoints(*, session: Session) -> list[WebhookEndpoint]:
    """All registered endpoints, oldest first."""
    return list(session.exec(select(WebhookEndpoint).order_by(col(WebhookEndpoint.id))).all())


def list_deliveries(
    *, session: Session, status: str | None, limit: int, offset: int
) -> tuple[list[tuple[WebhookDelivery, OutboxEvent]], int]:
    """Deliveries with their events, newest first, and the total matching `status`."""
    query = select(WebhookDelivery, OutboxEvent).join(
        OutboxEvent, col(OutboxEvent.id) == WebhookDelivery.outbox_event_id
    )
    counter = select(func.count()).select_from(WebhookDelivery)
    if status is not None:
        query = query.where(WebhookDelivery.status == status)
        counter = counter.where(WebhookDelivery.status == status)
    rows = session.exec(
        query.order_by(col(WebhookDelivery.id).desc()).offset(offset).limit(limit)
    ).all()
    return [(d, e) for d, e in rows], int(session.exec(counter).one())


def retry_delivery(
    *, session: Session, delivery_id: int, actor: str
) -> tuple[WebhookDelivery, OutboxEvent]:
    """Re-queues a dead delivery for an immediate attempt with a fresh attempt budget."""

    begin_write(session=session)
    delivery = session.get(WebhookDelivery, delivery_id)
    if delivery is None:
        raise NotFound(
            f"no webhook delivery {delivery_id}",
            hint="list deliveries with GET /v1/webhooks/deliveries?status=dead",
        )
    event = session.get(OutboxEvent, delivery.outbox_event_id)
    endpoint = session.get(WebhookEndpoint, delivery.endpoint_id)
    assert event is not None and endpoint is not None  # foreign keys
    if not endpoint.active:
        raise Conflict(
            f"webhook endpoint {endpoint.id} is deactivated",
            hint="register the endpoint again; new events go to active endpoints only",
            code="endpoint_inactive",
            details={"current_status": delivery.status},
        )
    now = utcnow()
    # Compare-and-set: only a delivery that is still dead is re-queued, so two clicks (or a
    # worker racing us) cannot queue it twice.
    result = session.execute(
        update(WebhookDelivery)
        .where(col(WebhookDelivery.id) == delivery_id, col(WebhookDelivery.status) == "dead")
        .values(status="pending", attempts=0, next_attempt_at=now, updated_at=now)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        session.rollback()
        current = session.get(WebhookDelivery, delivery_id)
        state = current.status if current else "gone"
        raise Conflict(
            f"only dead deliveries can be retried; this one is {state}",
            hint="pending deliveries are retried automatically with backoff",
            code="delivery_not_dead",
            details={"current_status": state},
        )
    record_event(
        session=session,
        return_id=event.return_id,
        actor=actor,
        action="webhook.retry_requested",
        before={"delivery_id": delivery_id, "status": "dead", "attempts": delivery.attempts},
        after={"delivery_id": delivery_id, "status": "pending", "event_id": event.event_id},
    )
    session.commit()
    session.refresh(delivery)
    return delivery, event
