"""Transactional outbox: domain events written with the change, fanned out to endpoints at once.

`enqueue_event` runs in the caller's transaction and creates one `WebhookDelivery` per active
endpoint subscribed to the event type, so an event and its deliveries commit (or roll back)
together with the change. Fan-out at enqueue time means an endpoint receives the events created
after it was registered, never a backlog from before.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from inspection.returns.audit import jsonable
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
