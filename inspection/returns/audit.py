"""Append-only audit log, hash-chained per return so that an edited, deleted or reordered event
is detectable.

Each event's `hash` is SHA-256 over the canonical JSON of its fields plus the previous event's
hash (`GENESIS_HASH` for the first). The chain head (latest seq and hash) is kept in
`audit_chain_heads`, which also makes a deleted *last* event detectable.

Concurrency: `record_event` reads and advances the chain head inside the caller's transaction.
On PostgreSQL it takes `SELECT ... FOR UPDATE` on the head row, so writers on one return queue
behind each other; callers that change a return already hold its row lock, which serialises them
earlier still. On SQLite the database write lock serialises writers. Whatever slips through
(two first events racing to create a head) hits the unique `(chain, seq)` constraint and the
loser's transaction fails with IntegrityError instead of forking the chain.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlmodel import Session, col, select

from inspection.store.db import SQLITE_BEGIN_OPTION
from inspection.store.records import AuditChainHead, AuditEvent, utcnow

GENESIS_HASH = "0" * 64
SYSTEM_CHAIN = "system"


def chain_for(*, return_id: int | None, chain: str | None = None) -> str:
    """Names the chain an event belongs to: one per return, or a named chain for the rest."""
    if return_id is not None:
        return f"return-{return_id}"
    return chain or SYSTEM_CHAIN


def jsonable(value: dict[str, Any]) -> dict[str, Any]:
    """The JSON form of a dict (datetimes as UTC ISO, models dumped), as it will be stored."""
    try:
        text = json.dumps(value, default=_json_default, sort_keys=True, allow_nan=False)
    except ValueError:
        # NaN and infinities are not JSON (PostgreSQL refuses them): keep them as text.
        text = json.dumps(_finite(value), default=_json_default, sort_keys=True, allow_nan=False)
    result: dict[str, Any] = json.loads(text)
    return result


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _json_safe(value: dict[str, Any] | None) -> dict[str, Any] | None:
    # Store exactly what is hashed: datetimes, enums and models become their JSON form once.
    return None if value is None else jsonable(value)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return _iso(value)
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if isinstance(value, set | frozenset | tuple):
        return sorted(value) if isinstance(value, set | frozenset) else list(value)
    return str(value)


def _iso(at: datetime) -> str:
    # SQLite hands datetimes back naive; everything of record is UTC, so naive means UTC.
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def compute_hash(
    *,
    chain: str,
    return_id: int | None,
    seq: int,
    at: datetime,
    actor: str,
    action: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    model_version: str | None,
    confidence: float | None,
    prev_hash: str,
) -> str:
    """SHA-256 hex of the canonical JSON of an event's fields and the previous hash."""
    canonical = json.dumps(
        {
            "chain": chain,
            "return_id": return_id,
            "seq": seq,
            "at": _iso(at),
            "actor": actor,
            "action": action,
            "before": before,
            "after": after,
            "model_version": model_version,
            "confidence": None if confidence is None else repr(float(confidence)),
            "prev_hash": prev_hash,
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _event_hash(event: AuditEvent) -> str:
    return compute_hash(
        chain=event.chain,
        return_id=event.return_id,
        seq=event.seq,
        at=event.at,
        actor=event.actor,
        action=event.action,
        before=event.before,
        after=event.after,
        model_version=event.model_version,
        confidence=event.confidence,
        prev_hash=event.prev_hash,
    )


def begin_write(*, session: Session) -> None:
    """Starts the session's transaction for a read-then-write on SQLite with BEGIN IMMEDIATE.

    SQLite in WAL mode cannot upgrade a read transaction once another writer has committed
    ("database is locked"); taking the write lock at BEGIN queues writers instead. PostgreSQL
    needs nothing here: writers lock the rows they change (`FOR UPDATE`).
    """
    if session.get_bind().dialect.name == "sqlite" and not session.in_transaction():
        session.connection(execution_options={SQLITE_BEGIN_OPTION: "IMMEDIATE"})


def record_event(
    *,
    session: Session,
    return_id: int | None,
    actor: str,
    action: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    model_version: str | None = None,
    confidence: float | None = None,
    chain: str | None = None,
    at: datetime | None = None,
) -> AuditEvent:
    """Appends an event to the chain in the caller's transaction (flushed, not committed)."""
    chain_name = chain_for(return_id=return_id, chain=chain)
    head = session.exec(
        select(AuditChainHead).where(AuditChainHead.chain == chain_name).with_for_update()
    ).first()
    seq = head.seq + 1 if head else 1
    prev_hash = head.hash if head else GENESIS_HASH
    # Microsecond precision is what both SQLite and PostgreSQL keep, so the hash survives storage.
    when = (at or utcnow()).astimezone(UTC)
    event = AuditEvent(
        chain=chain_name,
        return_id=return_id,
        seq=seq,
        at=when,
        actor=actor,
        action=action,
        before=_json_safe(before),
        after=_json_safe(after),
        model_version=model_version,
        # SQLite stores NaN as NULL, which would break the hash: a non-finite confidence is none.
        confidence=(
            float(confidence)
            if confidence is not None and math.isfinite(float(confidence))
            else None
        ),
        prev_hash=prev_hash,
        hash="",
    )
    event.hash = _event_hash(event)
    if head is None:
        session.add(AuditChainHead(chain=chain_name, seq=seq, hash=event.hash, updated_at=when))
    else:
        head.seq, head.hash, head.updated_at = seq, event.hash, when
        session.add(head)
    session.add(event)
    session.flush()
    return event


@dataclass(frozen=True)
class ChainVerification:
    """The outcome of recomputing a chain; `broken_at_seq` is the first seq that fails."""

    valid: bool
    events: list[AuditEvent] = field(default_factory=list)
    broken_at_seq: int | None = None
    problem: str | None = None


def list_events(
    *, session: Session, return_id: int | None, chain: str | None = None
) -> list[AuditEvent]:
    """The events of one chain in sequence order."""
    chain_name = chain_for(return_id=return_id, chain=chain)
    return list(
        session.exec(
            select(AuditEvent)
            .where(AuditEvent.chain == chain_name)
            .order_by(col(AuditEvent.seq), col(AuditEvent.id))
        ).all()
    )


def verify_chain(
    *, session: Session, return_id: int | None, chain: str | None = None
) -> ChainVerification:
    """Recomputes every hash of a chain; detects edited, deleted, inserted and reordered events."""
    chain_name = chain_for(return_id=return_id, chain=chain)
    events = list_events(session=session, return_id=return_id, chain=chain)
    head = session.get(AuditChainHead, chain_name)
    prev_hash = GENESIS_HASH
    # Rows are read in seq order, and ids grow with insertion: an id out of order means a row
    # was moved to another seq even if its hash fields were rewritten consistently.
    last_id = 0
    for expected_seq, event in enumerate(events, start=1):
        if event.seq != expected_seq:
            return _broken(events, expected_seq, f"event {expected_seq} is missing")
        if event.prev_hash != prev_hash:
            return _broken(events, event.seq, "prev_hash does not match the previous event")
        if _event_hash(event) != event.hash:
            return _broken(events, event.seq, "event content does not match its hash")
        if event.id is not None and event.id < last_id:
            return _broken(events, event.seq, "event order differs from insertion order")
        last_id = event.id or last_id
        prev_hash = event.hash
    if head is not None and head.seq != len(events):
        return _broken(
            events,
            min(head.seq, len(events)) + 1,
            f"chain head says {head.seq} events, found {len(events)} (deleted or appended)",
        )
    if head is not None and head.hash != prev_hash:
        return _broken(events, len(events), "chain head hash does not match the last event")
    if head is None and events:
        return _broken(events, 1, "chain head is missing")
    return ChainVerification(valid=True, events=events)


def _broken(events: list[AuditEvent], seq: int, problem: str) -> ChainVerification:
    return ChainVerification(valid=False, events=events, broken_at_seq=seq, problem=problem)


def verify_all_chains(*, session: Session) -> dict[str, ChainVerification]:
    """Verifies every chain that has a head or events (per return and named chains)."""
    names = set(session.exec(select(AuditChainHead.chain)).all())
    names |= set(session.exec(select(AuditEvent.chain).distinct()).all())
    results: dict[str, ChainVerification] = {}
    for name in sorted(names):
        return_id = int(name.removeprefix("return-")) if name.startswith("return-") else None
        results[name] = verify_chain(session=session, return_id=return_id, chain=name)
    return results
