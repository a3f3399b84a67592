"""Audit chain: events chain per return, and any edited, deleted or reordered row is detected."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from inspection.returns.audit import GENESIS_HASH, record_event, verify_chain
from inspection.store.models import Customer, Order, Return
from inspection.store.records import AuditEvent


def _new_return(session: Session, n: int = 1) -> int:
    customer = Customer(external_id=f"cust-{n}", email=f"c{n}@example.com")
    session.add(customer)
    session.flush()
    order = Order(order_number=f"ORD-{n}", customer_id=customer.id or 0, currency="EUR")
    session.add(order)
    session.flush()
    ret = Return(order_id=order.id or 0, customer_id=customer.id or 0)
    session.add(ret)
    session.flush()
    assert ret.id is not None
    return ret.id


def _chain_of_three(engine: Engine) -> int:
    with Session(engine) as session:
        return_id = _new_return(session)
        record_event(
            session=session,
            return_id=return_id,
            actor="customer:return-1",
            action="return.opened",
            before=None,
            after={"status": "return_requested"},
        )
        record_event(
            session=session,
            return_id=return_id,
            actor="model",
            action="grade.assigned",
            before=None,
            after={"grade": "resell"},
            model_version="grader-1.0.0",
            confidence=0.8731,
        )
        record_event(
            session=session,
            return_id=return_id,
            actor="station",
            action="grade.override",
            before={"grade": "resell"},
            after={"grade": "refurbish", "reason": "scratch on the back"},
        )
        session.commit()
        return return_id


def test_events_chain_with_seq_and_prev_hash(engine: Engine) -> None:
    return_id = _chain_of_three(engine)
    with Session(engine) as session:
        result = verify_chain(session=session, return_id=return_id)
    assert result.valid and result.broken_at_seq is None
    assert [e.seq for e in result.events] == [1, 2, 3]
    assert result.events[0].prev_hash == GENESIS_HASH
    assert result.events[1].prev_hash == result.events[0].hash
    assert result.events[2].prev_hash == result.events[1].hash
    assert result.events[1].model_version == "grader-1.0.0"
    assert result.events[1].confidence == pytest.approx(0.8731)


def test_chains_are_per_return(engine: Engine) -> None:
    with Session(engine) as session:
        first = _new_return(session, 1)
        second = _new_return(session, 2)
        a = record_event(
            session=session, return_id=first, actor="qa", action="x", before=None, after={}
        )
        b = record_event(
            session=session, return_id=second, actor="qa", action="x", before=None, after={}
        )
        session.commit()
        assert (a.seq, b.seq) == (1, 1)
        assert a.prev_hash == b.prev_hash == GENESIS_HASH
        assert a.hash != b.hash  # the chain name and return id are hashed


def test_record_event_joins_the_callers_transaction(engine: Engine) -> None:
    with Session(engine) as session:
        return_id = _new_return(session)
        session.commit()
    with Session(engine) as session:
        record_event(
            session=session, return_id=return_id, actor="qa", action="x", before=None, after={}
        )
        session.rollback()
    with Session(engine) as session:
        assert session.exec(select(AuditEvent)).all() == []
        assert verify_chain(session=session, return_id=return_id).valid


@pytest.mark.parametrize(
    "statement",
    [
        'UPDATE audit_events SET after = \'{"grade": "resell"}\' WHERE seq = 3',
        "UPDATE audit_events SET actor = 'admin' WHERE seq = 2",
        "UPDATE audit_events SET confidence = 0.99 WHERE seq = 2",
        "UPDATE audit_events SET at = '2020-01-01 00:00:00.000000' WHERE seq = 1",
    ],
    ids=["after", "actor", "confidence", "at"],
)
def test_tampered_row_is_detected(engine: Engine, statement: str) -> None:
    return_id = _chain_of_three(engine)
    with engine.begin() as conn:
        conn.execute(text(statement))
    with Session(engine) as session:
        result = verify_chain(session=session, return_id=return_id)
    expected = int(statement.rsplit("= ", 1)[1])
    assert not result.valid
    assert result.broken_at_seq == expected


def test_tampered_row_with_recomputed_own_hash_breaks_the_next_link(engine: Engine) -> None:
    return_id = _chain_of_three(engine)
    with Session(engine) as session:
        event = session.exec(select(AuditEvent).where(AuditEvent.seq == 2)).one()
        from inspection.returns.audit import compute_hash

        forged = compute_hash(
            chain=event.chain,
            return_id=event.return_id,
            seq=event.seq,
            at=event.at,
            actor="admin",
            action=event.action,
            before=event.before,
            after=event.after,
            model_version=event.model_version,
            confidence=event.confidence,
            prev_hash=event.prev_hash,
        )
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE audit_events SET actor = 'admin', hash = :h WHERE seq = 2"), {"h": forged}
        )
    with Session(engine) as session:
        result = verify_chain(session=session, return_id=return_id)
    assert not result.valid
    assert result.broken_at_seq == 3  # event 3 still points at the original hash of event 2


def test_deleted_middle_row_is_detected(engine: Engine) -> None:
    return_id = _chain_of_three(engine)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_events WHERE seq = 2"))
    with Session(engine) as session:
        result = verify_chain(session=session, return_id=return_id)
    assert not result.valid
    assert result.broken_at_seq == 2


def test_deleted_last_row_is_detected_by_the_chain_head(engine: Engine) -> None:
    return_id = _chain_of_three(engine)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_events WHERE seq = 3"))
    with Session(engine) as session:
        result = verify_chain(session=session, return_id=return_id)
    assert not result.valid
    assert result.broken_at_seq == 3
    assert len(result.events) == 2


def test_reordered_seq_is_detected(engine: Engine) -> None:
    return_id = _chain_of_three(engine)
    # Swap events 2 and 3 (through a free seq, as (chain, seq) is unique).
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_events SET seq = 99 WHERE seq = 2"))
        conn.execute(text("UPDATE audit_events SET seq = 2 WHERE seq = 3"))
        conn.execute(text("UPDATE audit_events SET seq = 3 WHERE seq = 99"))
    with Session(engine) as session:
        result = verify_chain(session=session, return_id=return_id)
    assert not result.valid
    assert result.broken_at_seq == 2


def test_duplicate_seq_cannot_be_written(engine: Engine) -> None:
    return_id = _chain_of_three(engine)
    with Session(engine) as session:
        first = session.exec(select(AuditEvent).where(AuditEvent.seq == 1)).one()
        clone = AuditEvent(
            chain=first.chain,
            return_id=return_id,
            seq=1,
            at=first.at,
            actor="intruder",
            action="fork",
            prev_hash=first.prev_hash,
            hash="f" * 64,
        )
        session.add(clone)
        with pytest.raises(IntegrityError):
            session.commit()


def test_system_chain_for_events_without_a_return(engine: Engine) -> None:
    with Session(engine) as session:
        event = record_event(
            session=session,
            return_id=None,
            actor="admin",
            action="customer.photos_deleted",
            before=None,
            after={"customer_id": 7, "deleted": 3},
        )
        session.commit()
        assert event.chain == "system" and event.seq == 1
        assert verify_chain(session=session, return_id=None).valid


def test_concurrent_writers_on_one_return_never_fork_the_chain(engine: Engine) -> None:
    import threading

    from inspection.store.db import SQLITE_BEGIN_OPTION

    with Session(engine) as session:
        return_id = _new_return(session)
        session.commit()
    # The documented protocol: a writer locks the return row (PostgreSQL FOR UPDATE; SQLite
    # takes its single write lock at BEGIN IMMEDIATE) before it records the event.
    writer_engine = (
        engine.execution_options(**{SQLITE_BEGIN_OPTION: "IMMEDIATE"})
        if engine.dialect.name == "sqlite"
        else engine
    )
    writers = 8
    barrier = threading.Barrier(writers)
    errors: list[BaseException] = []

    def write(n: int) -> None:
        barrier.wait()
        try:
            with Session(writer_engine) as session:
                session.exec(select(Return).where(Return.id == return_id).with_for_update()).one()
                record_event(
                    session=session,
                    return_id=return_id,
                    actor=f"station-{n}",
                    action="note",
                    before=None,
                    after={"n": n},
                )
                session.commit()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with Session(engine) as session:
        result = verify_chain(session=session, return_id=return_id)
    assert result.valid
    assert [e.seq for e in result.events] == list(range(1, writers + 1))
    assert sorted(e.after["n"] for e in result.events if e.after) == list(range(writers))


def test_verify_audit_command_names_the_broken_chain(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from inspection.cli import app
    from inspection.settings import get_settings

    return_id = _chain_of_three(engine)
    with Session(engine) as session:
        record_event(
            session=session, return_id=None, actor="admin", action="x", before=None, after={}
        )
        session.commit()
    monkeypatch.setenv("INSPECTION_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        ok = runner.invoke(app, ["verify-audit"])
        assert ok.exit_code == 0, ok.output
        assert "2 of 2 audit chain(s) valid" in ok.output
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM audit_events WHERE seq = 2 AND chain <> 'system'"))
        broken = runner.invoke(app, ["verify-audit"])
        assert broken.exit_code == 1
        assert f"return-{return_id}: broken at seq 2" in broken.output
        assert "1 of 2 audit chain(s) valid" in broken.output
    finally:
        get_settings.cache_clear()


# Lone surrogates and NUL cannot be stored as PostgreSQL text; JSON bodies from HTTP carry
# neither in practice.
SAFE_CHARS = st.characters(exclude_categories=("Cs",), exclude_characters="\x00")  # type: ignore[arg-type]
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(alphabet=SAFE_CHARS, max_size=20)
)


def _json_containers(inner: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    keys = st.text(alphabet=SAFE_CHARS, max_size=8)
    return st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4))


json_values = st.recursive(json_scalars, _json_containers, max_leaves=12)
json_objects = st.dictionaries(st.text(alphabet=SAFE_CHARS, max_size=10), json_values, max_size=5)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    before=st.none() | json_objects,
    after=st.none() | json_objects,
    actor=st.text(
        min_size=1,
        max_size=40,
        alphabet=SAFE_CHARS,
    ),
    confidence=st.none() | st.floats(min_value=0, max_value=1) | st.just(float("nan")),
)
def test_any_json_event_survives_storage_and_verifies(
    engine: Engine, before: dict | None, after: dict | None, actor: str, confidence: float | None
) -> None:
    """Whatever JSON an event carries, what is stored re-hashes to what was written."""
    chain = f"prop-{uuid.uuid4().hex[:12]}"
    with Session(engine) as session:
        for _ in range(2):
            record_event(
                session=session,
                return_id=None,
                chain=chain,
                actor=actor,
                action="prop",
                before=before,
                after=after,
                confidence=confidence,
            )
        session.commit()
    with Session(engine) as session:
        result = verify_chain(session=session, return_id=None, chain=chain)
    assert result.valid, result.problem
    assert len(result.events) == 2
