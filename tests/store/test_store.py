"""Store units: UTC timestamps round-trip, the RMA/idempotency UNIQUE constraints hold, the blob
store writes whole files, and the database-kept API keys are hashed."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from inspection.errors import NotFound
from inspection.store.api_keys import create_api_key, hash_api_key, make_api_key_lookup
from inspection.store.blobs import BlobStore
from inspection.store.models import ApiKey, Customer, Order, Refund, Return


def _order(session: Session) -> Order:
    customer = Customer(external_id="c-1", email="c1@example.com")
    session.add(customer)
    session.flush()
    order = Order(
        order_number="O-1",
        customer_id=customer.id,  # type: ignore[arg-type]
        currency="EUR",
        ordered_at=datetime(2026, 3, 29, 1, 30, tzinfo=timezone(timedelta(hours=2))),
    )
    session.add(order)
    session.flush()
    return order


def test_timestamps_come_back_aware_utc(engine: Engine) -> None:
    with Session(engine) as session:
        _order(session)
        session.commit()
    with Session(engine) as session:
        order = session.exec(select(Order)).one()
        assert order.ordered_at.tzinfo is not None
        assert order.ordered_at == datetime(2026, 3, 28, 23, 30, tzinfo=UTC)
        assert order.created_at.tzinfo is not None


def test_naive_timestamps_are_refused(engine: Engine) -> None:
    with Session(engine) as session:
        customer = Customer(external_id="c-2", email="c2@example.com")
        customer.created_at = datetime(2026, 1, 1)
        session.add(customer)
        with pytest.raises(Exception, match="timezone-aware"):
            session.flush()


def test_idempotency_key_is_unique(engine: Engine) -> None:
    with Session(engine) as session:
        order = _order(session)
        ret = Return(order_id=order.id, customer_id=order.customer_id)  # type: ignore[arg-type]
        session.add(ret)
        session.flush()
        for _ in range(2):
            session.add(
                Refund(
                    return_id=ret.id,  # type: ignore[arg-type]
                    amount_cents=100,
                    currency="EUR",
                    idempotency_key="same",
                    request_hash="h",
                    adapter="ledger",
                )
            )
        with pytest.raises(IntegrityError):
            session.flush()


def test_blob_store_is_content_addressed(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    data = b"photo bytes" * 1000

    key = store.put(data)

    assert key == hashlib.sha256(data).hexdigest()
    assert store.path_for(key) == tmp_path / "blobs" / key[:2] / key[2:4] / key
    assert store.get(key) == data
    assert store.put(data) == key  # identical bytes stored once
    assert [p.name for p in (tmp_path / "blobs").rglob("*") if p.is_file()] == [key]
    assert store.delete(key) is True and store.delete(key) is False
    with pytest.raises(NotFound):
        store.get(key)
    with pytest.raises(NotFound):
        store.path_for("../../etc/passwd")


def test_api_keys_are_stored_hashed(engine: Engine) -> None:
    with Session(engine) as session:
        key = create_api_key(session=session, role="qa", name="qa laptop")
        stored = session.exec(select(ApiKey)).one()
    assert stored.key_hash == hash_api_key(key) and key not in stored.key_hash
    lookup = make_api_key_lookup(engine=engine)
    assert lookup(key) == "qa"
    assert lookup(key + "x") is None
