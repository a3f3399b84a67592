"""SQLModel tables of the returns domain: customers, orders, returns, photos, inspections,
decisions, refunds, shipping labels and hashed API keys (audit/outbox/QA live in records.py).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import JSON, BigInteger, Column, DateTime, Index, LargeBinary, String, TypeDecorator
from sqlalchemy.engine import Dialect
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    """Timezone-aware now in UTC; every timestamp is stored in UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back timezone-aware.

    SQLite has no time zone type and hands back naive values; PostgreSQL keeps `timestamptz`.
    Naive values coming in are refused rather than guessed.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("timestamps must be timezone-aware")
        value = value.astimezone(UTC)
        # SQLite stores the literal; keep it naive UTC so string comparison orders correctly.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Float32Vector(TypeDecorator[list[float]]):
    """A vector of float32 values stored as little-endian bytes, read back as a list.

    Photo embeddings were JSON: 1280 floats made ~26 KB of text and ~0.3 ms to parse, and the
    photo-reuse search reads every stored customer photo's embedding on each decision
    (0.45 ms a stored photo, 9 s at 20,000). As bytes they are 5 KB and one `np.frombuffer`;
    the values are the model's float32 outputs, so nothing is lost.
    """

    impl = LargeBinary
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> bytes | None:
        if value is None:
            return None
        return vector_bytes(value)

    def process_result_value(self, value: bytes | None, dialect: Dialect) -> list[float] | None:
        if value is None:
            return None
        return vector_from_bytes(value).tolist()


def vector_bytes(values: Any) -> bytes:
    """The storage form of a Float32Vector (also written by the migration that introduced it)."""
    return np.asarray(values, dtype="<f4").tobytes()


def vector_from_bytes(data: bytes) -> np.ndarray:
    """A stored Float32Vector as a float32 array, without a round trip through Python floats."""
    return np.frombuffer(data, dtype="<f4")


def _ts(*, index: bool = False) -> Any:
    return Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False, index=index)
    )


def _opt_ts() -> Any:
    return Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))


def _json(*, default: Any) -> Any:
    factory = (lambda: list(default)) if isinstance(default, list) else (lambda: dict(default))
    return Field(default_factory=factory, sa_column=Column(JSON, nullable=False))


def _opt_json() -> Any:
    return Field(default=None, sa_column=Column(JSON, nullable=True))


# --- customers and orders --------------------------------------------------------------------


class Customer(SQLModel, table=True):
    """A retailer's customer, keyed by the retailer's own id."""

    __tablename__ = "customers"

    id: int | None = Field(default=None, primary_key=True)
    external_id: str = Field(sa_column=Column(String(128), nullable=False, unique=True))
    email: str = Field(max_length=320, index=True)
    name: str | None = Field(default=None, max_length=200)
    created_at: datetime = _ts()


class Order(SQLModel, table=True):
    """An order as the retailer's system knows it."""

    __tablename__ = "orders"

    id: int | None = Field(default=None, primary_key=True)
    order_number: str = Field(sa_column=Column(String(64), nullable=False, unique=True))
    customer_id: int = Field(foreign_key="customers.id", index=True)
    currency: str = Field(max_length=3)
    ordered_at: datetime = _ts()
    delivered_at: datetime | None = _opt_ts()
    shipping_country: str | None = Field(default=None, max_length=2)
    billing_country: str | None = Field(default=None, max_length=2)
    expedited_shipping: bool = False
    created_at: datetime = _ts()


class OrderLine(SQLModel, table=True):
    """One purchased line: unit price in integer minor units."""

    __tablename__ = "order_lines"

    id: int | None = Field(default=None, primary_key=True)
    order_id: int = Field(foreign_key="orders.id", index=True)
    sku: str = Field(max_length=64)
    name: str = Field(max_length=300)
    category: str = Field(max_length=64)
    price_cents: int = Field(sa_column=Column(BigInteger, nullable=False))
    currency: str = Field(max_length=3)
    quantity: int = 1
    final_sale: bool = False


# --- returns ---------------------------------------------------------------------------------


class Return(SQLModel, table=True):
    """A return (RMA) moving through the lifecycle in inspection.returns.lifecycle."""

    __tablename__ = "returns"
    __table_args__ = (Index("ix_returns_status_created", "status", "created_at"),)

    id: int | None = Field(default=None, primary_key=True)
    # Set right after the insert from the id (RMA-000123), hence nullable at the column level.
    rma: str | None = Field(default=None, sa_column=Column(String(32), nullable=True, unique=True))
    order_id: int = Field(foreign_key="orders.id", index=True)
    customer_id: int = Field(foreign_key="customers.id", index=True)
    status: str = Field(default="return_requested", max_length=32)
    final_grade: str | None = Field(default=None, max_length=16)
    final_grade_by: str | None = Field(default=None, max_length=16)  # model | inspector
    created_at: datetime = _ts(index=True)
    updated_at: datetime = _ts()
    received_at: datetime | None = _opt_ts()
    inspected_at: datetime | None = _opt_ts()
    refunded_at: datetime | None = _opt_ts()
    closed_at: datetime | None = _opt_ts()


class ReturnItem(SQLModel, table=True):
    """One order line being returned, with the customer's reason."""

    __tablename__ = "return_items"

    id: int | None = Field(default=None, primary_key=True)
    return_id: int = Field(foreign_key="returns.id", index=True)
    order_line_id: int = Field(foreign_key="order_lines.id", index=True)
    quantity: int = 1
    reason_code: str = Field(max_length=32)
    reason_text: str = Field(default="", max_length=2000)


class ShippingLabel(SQLModel, table=True):
    """The return shipping label issued when a return is approved."""

    __tablename__ = "shipping_labels"

    id: int | None = Field(default=None, primary_key=True)
    return_id: int = Field(foreign_key="returns.id", unique=True)
    carrier: str = Field(max_length=64)
    tracking_number: str = Field(max_length=64)
    label_url: str = Field(max_length=2048)
    created_at: datetime = _ts()


# --- photos and grades -----------------------------------------------------------------------


class Photo(SQLModel, table=True):
    """An uploaded photo: facts, quality flags and embedding; the bytes live in the blob store."""

    __tablename__ = "photos"

    id: int | None = Field(default=None, primary_key=True)
    return_id: int = Field(foreign_key="returns.id", index=True)
    return_item_id: int | None = Field(default=None, foreign_key="return_items.id")
    source: str = Field(max_length=16)  # customer | station
    blob_key: str | None = Field(default=None, max_length=128)  # None once deleted
    annotated_blob_key: str | None = Field(default=None, max_length=128)
    sha256: str = Field(max_length=64, index=True)
    phash: str = Field(max_length=16)
    content_type: str = Field(max_length=64)
    byte_size: int
    width: int
    height: int
    exif: dict[str, Any] = _json(default={})
    quality_passed: bool = True
    quality_flags: list[str] = _json(default=[])
    quality_advice: list[str] = _json(default=[])
    embedding: list[float] | None = Field(
        default=None, sa_column=Column(Float32Vector, nullable=True)
    )
    created_at: datetime = _ts(index=True)
    deleted_at: datetime | None = _opt_ts()


class Inspection(SQLModel, table=True):
    """A grade: per photo (scope=photo) or for the item from its photos (scope=item)."""

    __tablename__ = "inspections"

    id: int | None = Field(default=None, primary_key=True)
    return_id: int = Field(foreign_key="returns.id", index=True)
    photo_id: int | None = Field(default=None, foreign_key="photos.id", index=True)
    return_item_id: int | None = Field(default=None, foreign_key="return_items.id")
    scope: str = Field(max_length=8)  # photo | item
    source: str = Field(max_length=16)  # customer | station | inspector
    grade: str = Field(max_length=16)
    confidence: float
    probabilities: dict[str, float] = _json(default={})
    defects: list[dict[str, Any]] = _json(default=[])
    needs_review: bool = False
    reason_codes: list[str] = _json(default=[])
    model_version: str | None = Field(default=None, max_length=128)
    detector_version: str | None = Field(default=None, max_length=128)
    latency_ms: float = 0.0
    decided_by: str = Field(default="model", max_length=16)  # model | inspector
    reason: str | None = Field(default=None, max_length=2000)
    created_at: datetime = _ts()


class DecisionRecord(SQLModel, table=True):
    """A decision on a return with everything needed to explain and replay it."""

    __tablename__ = "decisions"

    id: int | None = Field(default=None, primary_key=True)
    return_id: int = Field(foreign_key="returns.id", index=True)
    outcome: str = Field(max_length=32)
    stage: str = Field(max_length=16)
    reason_codes: list[str] = _json(default=[])
    messages: list[str] = _json(default=[])
    fraud_score: float = 0.0
    fraud_signals: list[dict[str, Any]] = _json(default=[])
    refund_quote: dict[str, Any] | None = _opt_json()
    policy_version: str = Field(max_length=64)
    model_version: str | None = Field(default=None, max_length=128)
    decided_by: str = Field(default="model", max_length=128)
    inputs: dict[str, Any] = _json(default={})
    created_at: datetime = _ts()


REFUND_STATUSES = ("pending", "paid", "failed")


class Refund(SQLModel, table=True):
    """Money going back: one row per idempotency key, never paid twice."""

    __tablename__ = "refunds"

    id: int | None = Field(default=None, primary_key=True)
    return_id: int = Field(foreign_key="returns.id", index=True)
    amount_cents: int = Field(sa_column=Column(BigInteger, nullable=False))
    currency: str = Field(max_length=3)
    status: str = Field(default="pending", max_length=16)
    idempotency_key: str = Field(sa_column=Column(String(128), nullable=False, unique=True))
    request_hash: str = Field(max_length=64)
    adapter: str = Field(max_length=16)
    adapter_reference: str | None = Field(default=None, max_length=256)
    attempts: int = 0
    last_error: str | None = Field(default=None, max_length=1024)
    created_at: datetime = _ts()
    updated_at: datetime = _ts()
    paid_at: datetime | None = _opt_ts()


class ApiKey(SQLModel, table=True):
    """A staff API key stored as its SHA-256 (the key itself is shown once, never stored)."""

    __tablename__ = "api_keys"

    id: int | None = Field(default=None, primary_key=True)
    key_hash: str = Field(sa_column=Column(String(64), nullable=False, unique=True))
    role: str = Field(max_length=16)
    name: str = Field(max_length=200)
    created_at: datetime = _ts()
    revoked_at: datetime | None = _opt_ts()
