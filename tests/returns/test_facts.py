"""Fact gathering for the fraud signals, on both databases: customer history counts and the
search for near-identical photos on other returns (perceptual hash and embedding)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine
from sqlmodel import Session

from inspection.returns.facts import (
    PHASH_SEARCH_RADIUS,
    customer_history,
    hamming,
    photo_matches,
)
from inspection.store.models import Customer, DecisionRecord, Order, Photo, Return, utcnow


def _customer(session: Session, tag: str) -> Customer:
    customer = Customer(external_id=tag, email=f"{tag}@example.com")
    customer.created_at = utcnow() - timedelta(days=200)
    session.add(customer)
    session.flush()
    return customer


def _return(session: Session, customer: Customer, *, days_ago: int = 0) -> Return:
    order = Order(
        order_number=f"O-{customer.id}-{days_ago}-{utcnow().timestamp()}",
        customer_id=customer.id,  # type: ignore[arg-type]
        currency="EUR",
        ordered_at=utcnow() - timedelta(days=days_ago + 5),
    )
    session.add(order)
    session.flush()
    ret = Return(order_id=order.id, customer_id=customer.id)  # type: ignore[arg-type]
    ret.created_at = utcnow() - timedelta(days=days_ago)
    session.add(ret)
    session.flush()
    return ret


def _photo(session: Session, ret: Return, phash: str, embedding: list[float] | None) -> Photo:
    photo = Photo(
        return_id=ret.id,  # type: ignore[arg-type]
        source="customer",
        sha256=phash * 4,
        phash=phash,
        content_type="image/jpeg",
        byte_size=1,
        width=1,
        height=1,
        embedding=embedding,
    )
    session.add(photo)
    session.flush()
    return photo


def test_hamming_counts_differing_bits() -> None:
    assert hamming("0000000000000000", "0000000000000003") == 2
    assert hamming("ffffffffffffffff", "0000000000000000") == 64
    assert hamming("zz", "00") == 64  # unreadable hashes never match


def test_customer_history_counts_other_returns_and_flags(engine: Engine) -> None:
    with Session(engine) as session:
        customer = _customer(session, "hist")
        old = _return(session, customer, days_ago=60)
        _return(session, customer, days_ago=10)
        current = _return(session, customer)
        session.add(
            DecisionRecord(
                return_id=old.id,  # type: ignore[arg-type]
                outcome="needs_review",
                stage="claim",
                fraud_score=0.8,
                policy_version="t",
            )
        )
        session.flush()

        history = customer_history(session=session, ret=current, now=utcnow())

    assert history.orders_count == 3
    assert history.returns_count == 2
    assert history.returns_last_30d == 1 and history.returns_last_90d == 2
    assert history.prior_fraud_flags == 1


def test_photo_matches_by_hash_and_by_embedding(engine: Engine) -> None:
    with Session(engine) as session:
        alice, bob = _customer(session, "alice"), _customer(session, "bob")
        mine = _return(session, alice)
        theirs = _return(session, bob)
        own_old = _return(session, alice, days_ago=40)
        photo = _photo(session, mine, "00000000000000ff", [1.0, 0.0, 0.0])
        near = _photo(session, theirs, "00000000000000f0", None)  # 4 bits away
        far_but_same_look = _photo(session, own_old, "ffffffff00000000", [0.99, 0.01, 0.0])
        _photo(session, theirs, "ffffffffffffffff", [0.0, 1.0, 0.0])  # unrelated

        matches = photo_matches(session=session, ret=mine, photos=[photo], min_similarity=0.97)

    by_photo = {m.matched_photo_id: m for m in matches}
    assert set(by_photo) == {near.id, far_but_same_look.id}
    assert by_photo[near.id].phash_distance == 4 <= PHASH_SEARCH_RADIUS
    assert by_photo[near.id].same_customer is False
    assert by_photo[far_but_same_look.id].same_customer is True
    assert by_photo[far_but_same_look.id].embedding_similarity > 0.97  # type: ignore[operator]
