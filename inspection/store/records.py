"""Tables of record around a return: the hash-chained audit log, the webhook outbox with its
endpoints and deliveries, and QA relabels (the corrections that feed retraining).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, String, UniqueConstraint
from sqlmodel import Field, SQLModel

# The core tables must be in the metadata first: audit events and labels point at them.
from inspection.store.models import UTCDateTime, utcnow

__all__ = [
    "AuditChainHead",
    "AuditEvent",
    "OutboxEvent",
    "QaLabel",
    "WebhookDelivery",
    "WebhookEndpoint",
    "utcnow",
]


# --- audit ---------------------------------------------------------------------------------


class AuditEvent(SQLModel, table=True):
    """One append-only audit event; `hash` chains it to the previous event of the same chain.

    A chain is per return (`chain = "return-<id>"`); events not about one return (a privacy
    deletion for a customer, a model promotion) go to named chains such as `"system"`.
    """

    __tablename__ = "audit_events"
    __table_args__ = (UniqueConstraint("chain", "seq", name="uq_audit_events_chain_seq"),)

    id: int | None = Field(default=None, primary_key=True)
    chain: str = Field(sa_column=Column(String(64), nullable=False, index=True))
    return_id: int | None = Field(default=None, foreign_key="returns.id", index=True)
    seq: int
    at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))
    actor: str = Field(max_length=128)
    action: str = Field(max_length=128)
    before: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    after: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    model_version: str | None = Field(default=None, max_length=128)
    confidence: float | None = None
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)


class AuditChainHead(SQLModel, table=True):
    """The latest (seq, hash) of each chain: the row writers lock, and the anchor that makes a
    deleted last event detectable (a chain alone cannot tell a truncated tail from the end).
    """

    __tablename__ = "audit_chain_heads"

    chain: str = Field(sa_column=Column(String(64), primary_key=True))
    seq: int
    hash: str = Field(max_length=64)
    updated_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )


# --- webhooks ------------------------------------------------------------------------------


class WebhookEndpoint(SQLModel, table=True):
    """A merchant URL that receives signed events of the types it subscribed to ("*" = all)."""

    __tablename__ = "webhook_endpoints"

    id: int | None = Field(default=None, primary_key=True)
    url: str = Field(max_length=2048)
    events: list[str] = Field(default_factory=lambda: ["*"], sa_column=Column(JSON, nullable=False))
    # Kept in clear: HMAC signing needs the secret itself, so it cannot be stored hashed.
    secret: str = Field(max_length=256)
    active: bool = True
    created_by: str = Field(default="system", max_length=128)
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )


class OutboxEvent(SQLModel, table=True):
    """A domain event written in the same transaction as the change it describes."""

    __tablename__ = "outbox_events"

    id: int | None = Field(default=None, primary_key=True)
    # Public id sent as X-Inspection-Event-Id; receivers deduplicate on it.
    event_id: str = Field(sa_column=Column(String(64), nullable=False, unique=True))
    event_type: str = Field(max_length=64, index=True)
    return_id: int | None = Field(default=None, index=True)
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )


DELIVERY_STATUSES = ("pending", "sending", "delivered", "dead")


class WebhookDelivery(SQLModel, table=True):
    """One event to one endpoint: its attempts, backoff schedule and final state."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint(
            "outbox_event_id", "endpoint_id", name="uq_webhook_delivery_event_endpoint"
        ),
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    outbox_event_id: int = Field(foreign_key="outbox_events.id", index=True)
    endpoint_id: int = Field(foreign_key="webhook_endpoints.id", index=True)
    status: str = Field(default="pending", max_length=16)  # one of DELIVERY_STATUSES
    attempts: int = 0
    last_error: str | None = Field(default=None, max_length=1024)
    last_status_code: int | None = None
    next_attempt_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime(), nullable=True)
    )
    # A worker's claim: other workers skip the row until the claim is released or goes stale.
    claim_token: str | None = Field(default=None, max_length=64)
    claimed_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime(), nullable=True)
    )
    delivered_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime(), nullable=True)
    )
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
    updated_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )


# --- QA ------------------------------------------------------------------------------------


class QaLabel(SQLModel, table=True):
    """A QA relabel of one photo; `training import-corrections` reads these rows directly."""

    __tablename__ = "qa_labels"

    id: int | None = Field(default=None, primary_key=True)
    photo_id: int = Field(foreign_key="photos.id", index=True)
    return_id: int | None = Field(default=None, foreign_key="returns.id", index=True)
    grade: str = Field(max_length=16)  # the human grade: resell | refurbish | reject
    model_grade: str | None = Field(default=None, max_length=16)
    reason: str = Field(max_length=1000)
    labeled_by: str = Field(max_length=128)
    created_at: datetime = Field(
        default_factory=utcnow,
        sa_column=Column(UTCDateTime(), nullable=False, index=True),
    )
