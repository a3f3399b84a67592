"""Routes for webhooks: register endpoints, list them and their deliveries, retry dead ones."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, status
from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, UrlConstraints

from inspection.api.deps import Principal, SessionDep, require_roles
from inspection.returns import outbox
from inspection.returns.schemas import MAX_ID
from inspection.store.records import OutboxEvent, WebhookDelivery

router = APIRouter(tags=["webhooks"])

IntegrationAdminDep = Annotated[Principal, require_roles("integration")]
DeliveryStatus = Literal["pending", "sending", "delivered", "dead"]
MAX_URL_LENGTH = 2048  # the webhook_endpoints.url column


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: Annotated[AnyHttpUrl, UrlConstraints(max_length=MAX_URL_LENGTH)] = Field(
        description="http(s) URL that receives signed POSTs"
    )
    events: list[str] = Field(
        default_factory=lambda: ["*"],
        min_length=1,
        max_length=50,
        description='"*", "return.*", "return.<status>", "refund.released", "decision.made"',
    )
    secret: str | None = Field(
        default=None,
        min_length=16,
        max_length=256,
        pattern=r"^[\x21-\x7e]+$",  # visible ASCII: it travels in config files and env vars
        description="signing secret (visible ASCII); generated when omitted",
    )


class WebhookCreated(BaseModel):
    id: int
    url: str
    events: list[str]
    secret: str = Field(description="shown once: store it to verify X-Inspection-Signature")
    created_at: datetime


class WebhookPublic(BaseModel):
    id: int
    url: str
    events: list[str]
    active: bool
    created_at: datetime


class WebhooksPage(BaseModel):
    data: list[WebhookPublic]
    count: int


class DeliveryPublic(BaseModel):
    id: int
    event_id: str
    event_type: str
    return_id: int | None
    endpoint_id: int
    status: str
    attempts: int
    last_error: str | None
    last_status_code: int | None
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    created_at: datetime


class DeliveriesPage(BaseModel):
    data: list[DeliveryPublic]
    count: int


def _delivery_public(delivery: WebhookDelivery, event: OutboxEvent) -> DeliveryPublic:
    return DeliveryPublic(
        id=delivery.id or 0,
        event_id=event.event_id,
        event_type=event.event_type,
        return_id=event.return_id,
        endpoint_id=delivery.endpoint_id,
        status=delivery.status,
        attempts=delivery.attempts,
        last_error=delivery.last_error,
        last_status_code=delivery.last_status_code,
        next_attempt_at=delivery.next_attempt_at,
        delivered_at=delivery.delivered_at,
        created_at=delivery.created_at,
    )


@router.post("/webhooks", status_code=status.HTTP_201_CREATED, response_model=WebhookCreated)
def register_webhook(
    body: WebhookCreate, session: SessionDep, principal: IntegrationAdminDep
) -> WebhookCreated:
    """Registers an endpoint for the given event types; the secret is shown only here."""
    endpoint = outbox.register_endpoint(
        session=session,
        url=str(body.url),
        events=body.events,
        secret=body.secret,
        actor=principal.actor,
    )
    return WebhookCreated(
        id=endpoint.id or 0,
        url=endpoint.url,
        events=list(endpoint.events),
        secret=endpoint.secret,
        created_at=endpoint.created_at,
    )


@router.get("/webhooks", response_model=WebhooksPage)
def list_webhooks(session: SessionDep, _: IntegrationAdminDep) -> WebhooksPage:
    """Registered endpoints (never their secrets)."""
    rows = outbox.list_endpoints(session=session)
    return WebhooksPage(
        data=[WebhookPublic.model_validate(r, from_attributes=True) for r in rows], count=len(rows)
    )


@router.delete("/webhooks/{endpoint_id}", response_model=WebhookPublic)
def deactivate_webhook(
    session: SessionDep,
    principal: IntegrationAdminDep,
    endpoint_id: Annotated[int, Path(ge=1, le=MAX_ID)],
) -> WebhookPublic:
    """Stops deliveries to an endpoint; its pending deliveries move to the dead-letter queue."""
    endpoint = outbox.deactivate_endpoint(
        session=session, endpoint_id=endpoint_id, actor=principal.actor
    )
    return WebhookPublic.model_validate(endpoint, from_attributes=True)


@router.get("/webhooks/deliveries", response_model=DeliveriesPage)
def list_deliveries(
    session: SessionDep,
    _: IntegrationAdminDep,
    status: DeliveryStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> DeliveriesPage:
    """Deliveries newest first; `status=dead` is the dead-letter queue."""
    rows, total = outbox.list_deliveries(session=session, status=status, limit=limit, offset=offset)
    return DeliveriesPage(data=[_delivery_public(d, e) for d, e in rows], count=total)


@router.post("/webhooks/deliveries/{delivery_id}/retry", response_model=DeliveryPublic)
def retry_delivery(
    session: SessionDep,
    principal: IntegrationAdminDep,
    delivery_id: Annotated[int, Path(ge=1, le=MAX_ID)],
) -> DeliveryPublic:
    """Re-queues a dead delivery for an immediate attempt (409 for any other status)."""
    delivery, event = outbox.retry_delivery(
        session=session, delivery_id=delivery_id, actor=principal.actor
    )
    return _delivery_public(delivery, event)
