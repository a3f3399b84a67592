"""The state machine and customer tokens, without HTTP."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from inspection.errors import IllegalTransition, Unauthorized
from inspection.returns.audit import verify_chain
from inspection.returns.lifecycle import STATUSES, TRANSITIONS, allowed_next, transition
from inspection.returns.tokens import issue_customer_token, verify_customer_token
from inspection.store.models import Customer, Order, Return
from inspection.store.records import OutboxEvent

SECRET = "test-secret"


def test_every_status_has_its_transitions_and_closed_is_final() -> None:
    assert set(TRANSITIONS) == set(STATUSES)
    for targets in TRANSITIONS.values():
        assert set(targets) <= set(STATUSES)
    assert allowed_next("closed") == ()
    assert allowed_next("needs_review") == ("approved", "rejected")
    # Every status can reach closed: no return gets stuck.
    reachable = {"closed"}
    changed = True
    while changed:
        changed = False
        for status, targets in TRANSITIONS.items():
            if status not in reachable and set(targets) & reachable:
                reachable.add(status)
                changed = True
    assert reachable == set(STATUSES)


def _return(session: Session) -> Return:
    customer = Customer(external_id="c", email="c@example.com")
    session.add(customer)
    session.flush()
    from inspection.store.models import utcnow

    order = Order(
        order_number="O",
        customer_id=customer.id,
        currency="EUR",
        ordered_at=utcnow(),  # type: ignore[arg-type]
    )
    session.add(order)
    session.flush()
    ret = Return(order_id=order.id, customer_id=customer.id)  # type: ignore[arg-type]
    session.add(ret)
    session.flush()
    return ret


def test_transition_writes_audit_and_outbox_in_one_transaction(engine: Engine) -> None:
    with Session(engine) as session:
        ret = _return(session)
        transition(session=session, ret=ret, to="eligibility_check", actor="customer")
        transition(session=session, ret=ret, to="needs_review", actor="system", reason="r")
        session.commit()
        rid = ret.id
    with Session(engine) as session:
        types = session.exec(
            select(OutboxEvent.event_type).where(OutboxEvent.return_id == rid)
        ).all()
        assert types == ["return.eligibility_check", "return.needs_review"]
        assert verify_chain(session=session, return_id=rid).valid


def test_illegal_transition_raises_with_current_status_and_writes_nothing(engine: Engine) -> None:
    with Session(engine) as session:
        ret = _return(session)
        session.commit()
        with pytest.raises(IllegalTransition) as caught:
            transition(session=session, ret=ret, to="refunded", actor="station")
        assert caught.value.current_status == "return_requested"
        assert caught.value.details["current_status"] == "return_requested"
        session.rollback()
        assert session.exec(select(OutboxEvent)).all() == []


def test_customer_token_round_trip_and_tampering() -> None:
    token = issue_customer_token(return_id=42, secret=SECRET)
    assert verify_customer_token(token=token, secret=SECRET) == 42
    with pytest.raises(Unauthorized):
        verify_customer_token(token=token, secret="other-secret")
    with pytest.raises(Unauthorized):
        verify_customer_token(token=token.replace("ct1.42.", "ct1.43."), secret=SECRET)
    with pytest.raises(Unauthorized):
        verify_customer_token(token="garbage", secret=SECRET)
    expired = issue_customer_token(return_id=42, secret=SECRET, ttl=10, now=1000.0)
    with pytest.raises(Unauthorized, match="expired"):
        verify_customer_token(token=expired, secret=SECRET, now=2000.0)
