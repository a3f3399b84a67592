"""The one state machine of a return: its statuses, the allowed transitions, and `transition`,
which writes the audit event and the outbox event in the same transaction as the change.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from sqlmodel import Session

from inspection.errors import IllegalTransition
from inspection.returns.audit import record_event
from inspection.returns.outbox import enqueue_event
from inspection.store.db import SQLITE_BEGIN_OPTION
from inspection.store.models import Return, utcnow

Status = Literal[
    "return_requested",
    "eligibility_check",
    "approved",
    "needs_review",
    "rejected",
    "label_sent",
    "item_received",
    "inspected",
    "refunded",
    "closed",
]
STATUSES: tuple[Status, ...] = get_args(Status)

TRANSITIONS: dict[Status, tuple[Status, ...]] = {
    "return_requested": ("eligibility_check",),
    "eligibility_check": ("approved", "needs_review", "rejected"),
    "needs_review": ("approved", "rejected"),
    # An instant refund pays from approved/label_sent without leaving the physical flow:
    # the item must still arrive and be inspected, so no status jumps ahead of the parcel.
    "approved": ("label_sent",),
    "label_sent": ("item_received",),
    "item_received": ("inspected",),
    # inspected -> closed only when nothing is left to pay (instant refund already paid, or a
    # zero quote); the refund service checks that before asking for it.
    "inspected": ("refunded", "closed"),
    "refunded": ("closed",),
    "rejected": ("closed",),
    "closed": (),
}

# What a caller may do next in each status, for `allowed_actions` in ReturnPublic.
ACTIONS: dict[Status, tuple[str, ...]] = {
    "return_requested": ("add_customer_photos", "submit"),
    "eligibility_check": (),
    "needs_review": ("decide",),
    "approved": ("refund",),
    "rejected": ("close",),
    "label_sent": ("add_station_photos", "receive"),
    "item_received": ("add_station_photos", "inspect"),
    "inspected": ("refund", "close"),
    "refunded": ("close",),
    "closed": (),
}

# Timestamps stamped on arrival in a status.
_STAMPS: dict[str, str] = {
    "item_received": "received_at",
    "inspected": "inspected_at",
    "refunded": "refunded_at",
    "closed": "closed_at",
}


def allowed_next(status: str) -> tuple[Status, ...]:
    """Statuses reachable in one step from `status`."""
    return TRANSITIONS.get(status, ())  # type: ignore[call-overload]


def ensure_status(*, ret: Return, allowed: tuple[str, ...], action: str) -> None:
    """Raises IllegalTransition (409 with the current status) unless `ret.status` is allowed."""
    if ret.status not in allowed:
        raise IllegalTransition(
            current_status=ret.status, action=action, allowed=list(allowed_next(ret.status))
        )


def begin_write(*, session: Session) -> None:
    """Starts a write transaction: on SQLite with BEGIN IMMEDIATE, so writers queue.

    SQLite in WAL mode cannot upgrade a read snapshot to a write once another writer committed
    ("database is locked"); any read-only snapshot of this request is dropped first (callers
    re-read what they need under the lock). PostgreSQL locks rows instead (`lock_return`).
    """
    if session.get_bind().dialect.name != "sqlite":
        return
    if session.in_transaction():
        session.rollback()
    session.connection(execution_options={SQLITE_BEGIN_OPTION: "IMMEDIATE"})


def lock_return(*, session: Session, ret: Return) -> Return:
    """Re-reads a return under a write lock, so its status check and change are atomic."""
    begin_write(session=session)
    if session.get_bind().dialect.name == "sqlite":
        session.refresh(ret)
    else:
        session.refresh(ret, with_for_update=True)
    return ret


def transition(
    *,
    session: Session,
    ret: Return,
    to: Status,
    actor: str,
    reason: str | None = None,
    details: dict[str, Any] | None = None,
    model_version: str | None = None,
    confidence: float | None = None,
) -> Return:
    """Moves a return to `to`, recording audit and outbox events in the caller's transaction."""
    before = ret.status
    if to not in allowed_next(before):
        raise IllegalTransition(
            current_status=before, action=f"move to {to}", allowed=list(allowed_next(before))
        )
    now = utcnow()
    ret.status = to
    ret.updated_at = now
    stamp = _STAMPS.get(to)
    if stamp:
        setattr(ret, stamp, now)
    session.add(ret)
    session.flush()
    after: dict[str, Any] = {"status": to}
    if reason:
        after["reason"] = reason
    if details:
        after.update(details)
    record_event(
        session=session,
        return_id=ret.id,
        actor=actor,
        action=f"status.{to}",
        before={"status": before},
        after=after,
        model_version=model_version,
        confidence=confidence,
    )
    enqueue_event(
        session=session,
        event_type=f"return.{to}",
        payload={
            "return_id": ret.id,
            "rma": ret.rma,
            "status": to,
            "previous_status": before,
            "reason": reason,
            **(details or {}),
        },
        return_id=ret.id,
    )
    return ret
