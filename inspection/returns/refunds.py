"""Refund release: amount from the policy and the final grade, paid once per idempotency key
through a payment adapter (`ledger` records it here, `webhook` POSTs to the merchant).

Never paid twice: the key is UNIQUE, the release runs under a lock on the return (SELECT ...
FOR UPDATE on PostgreSQL, BEGIN IMMEDIATE on SQLite), and the refund is recorded `pending`
before the adapter is called, so a crash mid-call leaves a row to recover instead of a mystery.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

import httpx
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from inspection.decisions.policy import Policy
from inspection.errors import Conflict, IllegalTransition, InvalidInput
from inspection.observability import REFUND_CYCLE, REFUNDS
from inspection.returns import service
from inspection.returns.audit import record_event
from inspection.returns.lifecycle import begin_write, transition
from inspection.returns.outbox import enqueue_event
from inspection.returns.signing import sign_payload
from inspection.settings import RefundSettings
from inspection.store.models import DecisionRecord, Order, Refund, Return, utcnow

log = logging.getLogger(__name__)

# A pending refund older than this is taken to be from a crashed attempt and may be retried
# (the adapter call carries the same idempotency key, so the merchant pays at most once).
STALE_PENDING = timedelta(minutes=5)
# Before receipt only an instant-refund decision releases money.
INSTANT_REFUND_STATUSES = ("approved", "label_sent")
MAX_KEY_LENGTH = 128


class PaymentFailed(Exception):
    """The payment service refused or could not be reached; the refund stays retryable."""


class PaymentAdapter(Protocol):
    """Pays a refund; returns the payment service's reference or raises PaymentFailed."""

    name: str

    def pay(self, *, refund: Refund, rma: str) -> str: ...


class LedgerAdapter:
    """Records the refund in our own database: the refund row is the ledger entry."""

    name = "ledger"

    def pay(self, *, refund: Refund, rma: str) -> str:
        return f"ledger-{refund.id:08d}"


class WebhookAdapter:
    """POSTs the refund to the merchant's payment service, HMAC-signed, with Idempotency-Key."""

    name = "webhook"

    def __init__(self, *, url: str, secret: str, timeout: float) -> None:
        self.url = url
        self.secret = secret
        self.timeout = timeout

    def pay(self, *, refund: Refund, rma: str) -> str:
        body = json.dumps(
            {
                "refund_id": refund.id,
                "return_id": refund.return_id,
                "rma": rma,
                "amount_cents": refund.amount_cents,
                "currency": refund.currency,
                "idempotency_key": refund.idempotency_key,
            },
            sort_keys=True,
        ).encode()
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": refund.idempotency_key,
            "X-Inspection-Timestamp": str(timestamp),
            "X-Inspection-Signature": sign_payload(
                secret=self.secret, body=body, timestamp=timestamp
            ),
        }
        try:
            response = httpx.post(self.url, content=body, headers=headers, timeout=self.timeout)
        except httpx.HTTPError as exc:
            raise PaymentFailed(f"payment service unreachable: {type(exc).__name__}") from exc
        if not response.is_success:
            raise PaymentFailed(f"payment service answered HTTP {response.status_code}")
        try:
            reference = response.json().get("reference") or response.json().get("id")
        except (ValueError, AttributeError):
            reference = None
        return str(reference or f"webhook-{refund.id}")


def adapter_from_settings(settings: RefundSettings) -> PaymentAdapter:
    """The adapter the settings choose."""
    if settings.adapter == "webhook":
        assert settings.webhook_url  # settings validation guarantees it
        return WebhookAdapter(
            url=settings.webhook_url,
            secret=settings.webhook_secret,
            timeout=settings.timeout_seconds,
        )
    return LedgerAdapter()


@dataclass(frozen=True)
class RefundOutcome:
    refund: Refund
    created: bool  # this request created the refund (201) rather than finding it (200)


def default_key(return_id: int) -> str:
    """The idempotency key used when the caller sends none: one refund per return."""
    return f"return-{return_id}-refund"


def request_hash(*, return_id: int) -> str:
    """What a key is bound to; the same key on another return is a different request."""
    return hashlib.sha256(f"refund:return:{return_id}".encode()).hexdigest()


def _lock_return(*, session: Session, return_id: int) -> Return:
    bind = session.get_bind()
    if bind.dialect.name == "sqlite":
        # Take SQLite's write lock at BEGIN, so concurrent releases queue instead of racing;
        # a read already begun could not be upgraded later ("database is locked").
        begin_write(session=session)
        ret = session.get(Return, return_id, populate_existing=True)
    else:
        ret = session.exec(select(Return).where(Return.id == return_id).with_for_update()).first()
    if ret is None:
        return service.get_return(session=session, return_id=return_id)  # raises NotFound
    return ret


def _amount(*, session: Session, ret: Return, policy: Policy) -> tuple[int, str]:
    decision = service.latest_decision(session=session, return_id=ret.id)  # type: ignore[arg-type]
    if decision is not None and decision.outcome == "ineligible":
        # A failed policy rule at inspection (say the policy changed since the claim) carries no
        # quote; falling back to the policy's price would pay a return the decision refused.
        order = session.get(Order, ret.order_id)
        assert order is not None  # foreign key
        return 0, order.currency
    if decision is not None and decision.refund_quote:
        quote = decision.refund_quote
        return int(quote["amount_cents"]), str(quote["currency"])
    computed = service.refund_quote(session=session, ret=ret, policy=policy)
    return computed.amount_cents, computed.currency


def _claim_outcome(*, session: Session, ret: Return) -> str | None:
    row = session.exec(
        select(DecisionRecord)
        .where(DecisionRecord.return_id == ret.id, DecisionRecord.stage == "claim")
        .order_by(col(DecisionRecord.id).desc())
    ).first()
    return row.outcome if row else None


def _ensure_not_held(*, session: Session, ret: Return) -> None:
    """An inspection decision of `needs_review` (fraud signals, value above the auto-approve
    limit) holds the money until QA or an admin decides; the station cannot pay past it."""
    decision = service.latest_decision(session=session, return_id=ret.id)  # type: ignore[arg-type]
    if decision is not None and decision.outcome == "needs_review":
        raise Conflict(
            "the inspection decision is waiting for a reviewer, so no refund can be released yet",
            hint="QA or an admin decides with POST /v1/returns/{id}/decision "
            "(approve releases the refund, reject closes the return unpaid)",
            code="refund_on_hold",
            details={"current_status": ret.status, "reason_codes": list(decision.reason_codes)},
        )


def _retry(*, session: Session, refund: Refund, actor: str) -> Refund:
    """Marks a failed (or stale pending) refund pending again for one more attempt; commits."""
    before = refund.status
    refund.status = "pending"
    refund.attempts += 1
    refund.updated_at = utcnow()
    session.add(refund)
    record_event(
        session=session,
        return_id=refund.return_id,
        actor=actor,
        action="refund.retried",
        before={"status": before},
        after={"refund_id": refund.id, "attempt": refund.attempts},
    )
    session.commit()
    return refund


def _reserve(
    *, engine: Engine, return_id: int, key: str, policy: Policy, adapter: str, actor: str
) -> tuple[Refund, bool, bool]:
    """Under the lock: find or create the refund. Returns (refund, created, must_pay)."""
    digest = request_hash(return_id=return_id)
    with Session(engine, expire_on_commit=False) as session:
        ret = _lock_return(session=session, return_id=return_id)
        existing = session.exec(select(Refund).where(Refund.idempotency_key == key)).first()
        if existing is not None:
            if existing.request_hash != digest:
                raise Conflict(
                    "this Idempotency-Key was already used for a different refund",
                    hint="send a new key for a new refund, or the original request to retry it",
                    code="idempotency_key_reused",
                )
            stale = existing.status == "pending" and utcnow() - existing.updated_at > STALE_PENDING
            if existing.status == "paid" or (existing.status == "pending" and not stale):
                return existing, False, False
            return _retry(session=session, refund=existing, actor=actor), False, True
        live = session.exec(
            select(Refund).where(
                Refund.return_id == return_id, col(Refund.status).in_(("pending", "paid"))
            )
        ).first()
        if live is not None:
            # Another key for a return already being paid: answer with that refund, pay nothing.
            return live, False, False
        failed = session.exec(
            select(Refund)
            .where(Refund.return_id == return_id, Refund.status == "failed")
            .order_by(col(Refund.id).desc())
        ).first()
        if failed is not None:
            # A failed call may still have reached the merchant (a timeout says nothing); paying
            # under a new key could pay twice, so the failed refund is retried with its own key.
            return _retry(session=session, refund=failed, actor=actor), False, True
        instant = (
            ret.status in INSTANT_REFUND_STATUSES
            and _claim_outcome(session=session, ret=ret) == "approve_refund"
        )
        if ret.status != "inspected" and not instant:
            raise IllegalTransition(
                current_status=ret.status,
                action="release a refund for",
                allowed=["inspected"],
            )
        if ret.status == "inspected":
            _ensure_not_held(session=session, ret=ret)
        amount, currency = _amount(session=session, ret=ret, policy=policy)
        if amount <= 0:
            raise Conflict(
                "the policy allows no refund for this return (0 due)",
                hint="close the return instead",
                code="nothing_to_refund",
                details={"current_status": ret.status},
            )
        refund = Refund(
            return_id=return_id,
            amount_cents=amount,
            currency=currency,
            status="pending",
            idempotency_key=key,
            request_hash=digest,
            adapter=adapter,
            attempts=1,
        )
        session.add(refund)
        try:
            session.flush()
        except IntegrityError:
            session.rollback()
            raise Conflict(
                "this Idempotency-Key is being used by another request right now",
                hint="retry the same request in a moment",
                code="idempotency_key_in_use",
            ) from None
        record_event(
            session=session,
            return_id=return_id,
            actor=actor,
            action="refund.requested",
            before=None,
            after={
                "refund_id": refund.id,
                "amount_cents": amount,
                "currency": currency,
                "idempotency_key": key,
                "adapter": adapter,
                "instant": instant,
            },
        )
        session.commit()
        return refund, True, True


def _settle(
    *,
    engine: Engine,
    refund_id: int,
    return_id: int,
    reference: str | None,
    error: str | None,
    actor: str,
) -> Refund:
    """Records the adapter's answer: paid (and the return refunded) or failed (retryable)."""
    with Session(engine, expire_on_commit=False) as session:
        # Lock first, read after: nothing may be read before the write lock is held.
        ret = _lock_return(session=session, return_id=return_id)
        refund = session.get(Refund, refund_id)
        assert refund is not None
        now = utcnow()
        refund.updated_at = now
        if error is None:
            refund.status = "paid"
            refund.adapter_reference = reference
            refund.paid_at = now
            refund.last_error = None
            summary = {
                "refund_id": refund.id,
                "amount_cents": refund.amount_cents,
                "currency": refund.currency,
                "adapter": refund.adapter,
                "adapter_reference": reference,
                "idempotency_key": refund.idempotency_key,
            }
            record_event(
                session=session,
                return_id=ret.id,
                actor=actor,
                action="refund.released",
                before={"status": "pending"},
                after=summary,
            )
            enqueue_event(
                session=session,
                event_type="refund.released",
                payload={"return_id": ret.id, "rma": ret.rma, **summary},
                return_id=ret.id,
            )
            if ret.status == "inspected":
                transition(session=session, ret=ret, to="refunded", actor=actor)
            else:
                ret.refunded_at = now  # instant refund: the parcel is still on its way
                session.add(ret)
            REFUNDS.labels(adapter=refund.adapter).inc()
            REFUND_CYCLE.observe((now - ret.created_at).total_seconds())
        else:
            refund.status = "failed"
            refund.last_error = error[:1000]
            record_event(
                session=session,
                return_id=ret.id,
                actor=actor,
                action="refund.failed",
                before={"status": "pending"},
                after={"refund_id": refund.id, "error": refund.last_error},
            )
        session.add(refund)
        session.commit()
        return refund


def release_refund(
    *,
    engine: Engine,
    return_id: int,
    idempotency_key: str | None,
    policy: Policy,
    adapter: PaymentAdapter,
    actor: str,
) -> RefundOutcome:
    """Releases the refund of a return once; a retry returns the same refund."""
    key = (idempotency_key or "").strip() or default_key(return_id)
    if len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise InvalidInput(
            f"Idempotency-Key must be printable and at most {MAX_KEY_LENGTH} characters",
            hint="use a UUID",
        )
    refund, created, must_pay = _reserve(
        engine=engine,
        return_id=return_id,
        key=key,
        policy=policy,
        adapter=adapter.name,
        actor=actor,
    )
    if not must_pay:
        return RefundOutcome(refund=refund, created=created)
    rma = f"RMA-{return_id:06d}"
    try:
        reference, error = adapter.pay(refund=refund, rma=rma), None
    except PaymentFailed as exc:
        reference, error = None, str(exc)
        log.warning("refund %s failed: %s", refund.id, exc)
    settled = _settle(
        engine=engine,
        refund_id=refund.id,  # type: ignore[arg-type]
        return_id=return_id,
        reference=reference,
        error=error,
        actor=actor,
    )
    return RefundOutcome(refund=settled, created=created)


def latest_refund(*, session: Session, return_id: int) -> Refund | None:
    """The refund shown on a return: the live one, else the newest attempt."""
    rows = session.exec(
        select(Refund).where(Refund.return_id == return_id).order_by(col(Refund.id).desc())
    ).all()
    for row in rows:
        if row.status in ("paid", "pending"):
            return row
    return rows[0] if rows else None
