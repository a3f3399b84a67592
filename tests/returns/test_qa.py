"""QA service: mistakenness, queue ranking, the relabel flow and the confusion matrix, over rows
seeded with known grades (the seeding helpers are reused by the API tests)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from inspection.errors import InvalidInput, NotFound
from inspection.returns.audit import verify_chain
from inspection.returns.qa import (
    REASON_CROSS_SOURCE,
    REASON_LOW_CONFIDENCE,
    REASON_OVERRIDE,
    add_label,
    confusion_matrix,
    list_labels,
    mistakenness,
    qa_queue,
)
from inspection.store.models import (
    Customer,
    DecisionRecord,
    Inspection,
    Order,
    OrderLine,
    Photo,
    Refund,
    Return,
    ReturnItem,
)
from inspection.store.records import QaLabel

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def probs(resell: float, refurbish: float, reject: float) -> dict[str, float]:
    return {"resell": resell, "refurbish": refurbish, "reject": reject}


class Seeder:
    """Writes rows with known values straight into the tables (what the API would have made)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._n = 0

    def _tag(self) -> str:
        self._n += 1
        return f"{self._n:04d}"

    def _add(self, row: Any) -> int:
        with Session(self.engine) as session:
            session.add(row)
            session.commit()
            session.refresh(row)
            return int(row.id)

    def return_(
        self,
        *,
        sku: str = "SKU-A",
        price_cents: int = 10_000,
        quantity: int = 1,
        reason_code: str = "defective",
        created_at: datetime = T0,
        status: str = "return_requested",
        final_grade: str | None = None,
        currency: str = "EUR",
    ) -> tuple[int, int]:
        """An order with one line and a return of it; (return_id, return_item_id)."""
        tag = self._tag()
        with Session(self.engine) as session:
            customer = Customer(external_id=f"c-{tag}", email=f"c{tag}@example.com")
            session.add(customer)
            session.flush()
            order = Order(
                order_number=f"O-{tag}",
                customer_id=customer.id or 0,
                currency=currency,
                ordered_at=created_at - timedelta(days=10),
                delivered_at=created_at - timedelta(days=5),
            )
            session.add(order)
            session.flush()
            line = OrderLine(
                order_id=order.id or 0,
                sku=sku,
                name=f"item {sku}",
                category="electronics",
                price_cents=price_cents,
                currency=currency,
                quantity=quantity,
            )
            session.add(line)
            session.flush()
            ret = Return(
                order_id=order.id or 0,
                customer_id=customer.id or 0,
                status=status,
                final_grade=final_grade,
                created_at=created_at,
                updated_at=created_at,
            )
            session.add(ret)
            session.flush()
            ret.rma = f"RMA-{ret.id:06d}"
            item = ReturnItem(
                return_id=ret.id or 0,
                order_line_id=line.id or 0,
                quantity=quantity,
                reason_code=reason_code,
            )
            session.add(item)
            session.commit()
            return ret.id or 0, item.id or 0

    def photo(
        self,
        *,
        return_id: int,
        item_id: int | None,
        source: str,
        grade: str,
        probabilities: dict[str, float],
        defects: list[str] | None = None,
        created_at: datetime = T0,
        blob_key: str | None = None,
        content: bytes | None = None,
    ) -> int:
        """A photo and the model's grade of it (confidence = p(grade))."""
        data = content or f"photo-{self._tag()}".encode()
        photo_id = self._add(
            Photo(
                return_id=return_id,
                return_item_id=item_id,
                source=source,
                blob_key=blob_key,
                sha256=hashlib.sha256(data).hexdigest(),
                phash="0" * 16,
                content_type="image/jpeg",
                byte_size=len(data),
                width=640,
                height=480,
                created_at=created_at,
            )
        )
        self.photo_grade(
            photo_id=photo_id,
            return_id=return_id,
            item_id=item_id,
            source=source,
            grade=grade,
            probabilities=probabilities,
            defects=defects,
            created_at=created_at,
        )
        return photo_id

    def photo_grade(
        self,
        *,
        photo_id: int,
        return_id: int,
        item_id: int | None,
        source: str,
        grade: str,
        probabilities: dict[str, float],
        defects: list[str] | None = None,
        created_at: datetime = T0,
    ) -> int:
        return self._add(
            Inspection(
                return_id=return_id,
                photo_id=photo_id,
                return_item_id=item_id,
                scope="photo",
                source=source,
                grade=grade,
                confidence=probabilities[grade],
                probabilities=probabilities,
                defects=[
                    {"defect_type": d, "confidence": 0.9, "box": [0.1, 0.1, 0.3, 0.3]}
                    for d in (defects or [])
                ],
                model_version="grader-test",
                created_at=created_at,
            )
        )

    def item_grade(
        self,
        *,
        return_id: int,
        item_id: int | None,
        source: str,
        grade: str,
        confidence: float = 0.9,
        decided_by: str = "model",
        created_at: datetime = T0,
    ) -> int:
        return self._add(
            Inspection(
                return_id=return_id,
                return_item_id=item_id,
                scope="item",
                source=source,
                grade=grade,
                confidence=confidence,
                decided_by=decided_by,
                reason="override" if decided_by == "inspector" else None,
                created_at=created_at,
            )
        )

    def decision(
        self,
        *,
        return_id: int,
        outcome: str,
        decided_by: str = "model",
        fraud_score: float = 0.0,
        reason_codes: list[str] | None = None,
        signals: list[dict[str, Any]] | None = None,
        created_at: datetime = T0,
    ) -> int:
        return self._add(
            DecisionRecord(
                return_id=return_id,
                outcome=outcome,
                stage="claim",
                reason_codes=reason_codes or [],
                fraud_score=fraud_score,
                fraud_signals=signals or [],
                policy_version="test",
                decided_by=decided_by,
                created_at=created_at,
            )
        )

    def refund(self, *, return_id: int, amount_cents: int, paid_at: datetime) -> int:
        return self._add(
            Refund(
                return_id=return_id,
                amount_cents=amount_cents,
                currency="EUR",
                status="paid",
                idempotency_key=f"refund-{return_id}-{self._tag()}",
                request_hash="0" * 64,
                adapter="ledger",
                created_at=paid_at,
                paid_at=paid_at,
            )
        )

    def label(self, *, photo_id: int, grade: str, model_grade: str, created_at: datetime) -> int:
        return self._add(
            QaLabel(
                photo_id=photo_id,
                grade=grade,
                model_grade=model_grade,
                reason="seeded",
                labeled_by="qa",
                created_at=created_at,
            )
        )


@pytest.fixture
def seed(engine: Engine) -> Seeder:
    return Seeder(engine)


def seed_queue(seed: Seeder) -> dict[str, int]:
    """Four photos in the queue for different reasons, one confident photo and one labeled."""
    # Inspector overrode a confident station grade: resell -> reject.
    r1, i1 = seed.return_(status="inspected")
    p1 = seed.photo(
        return_id=r1,
        item_id=i1,
        source="station",
        grade="resell",
        probabilities=probs(0.95, 0.04, 0.01),
    )
    seed.item_grade(return_id=r1, item_id=i1, source="station", grade="resell")
    seed.item_grade(
        return_id=r1, item_id=i1, source="inspector", grade="reject", decided_by="inspector"
    )
    # An unsure customer photo, nothing else known.
    r2, i2 = seed.return_()
    p2 = seed.photo(
        return_id=r2,
        item_id=i2,
        source="customer",
        grade="resell",
        probabilities=probs(0.55, 0.40, 0.05),
    )
    # Customer photos say resell, station photos say refurbish.
    r3, i3 = seed.return_(status="item_received")
    p3 = seed.photo(
        return_id=r3,
        item_id=i3,
        source="customer",
        grade="resell",
        probabilities=probs(0.80, 0.15, 0.05),
    )
    seed.item_grade(return_id=r3, item_id=i3, source="customer", grade="resell")
    p4 = seed.photo(
        return_id=r3,
        item_id=i3,
        source="station",
        grade="refurbish",
        probabilities=probs(0.30, 0.60, 0.10),
    )
    seed.item_grade(return_id=r3, item_id=i3, source="station", grade="refurbish")
    # Confident and undisputed: not in the queue.
    r4, i4 = seed.return_()
    p5 = seed.photo(
        return_id=r4,
        item_id=i4,
        source="customer",
        grade="reject",
        probabilities=probs(0.01, 0.02, 0.97),
    )
    # Unsure but already labeled by QA: left the queue.
    p6 = seed.photo(
        return_id=r4,
        item_id=i4,
        source="customer",
        grade="refurbish",
        probabilities=probs(0.3, 0.4, 0.3),
    )
    seed.label(photo_id=p6, grade="reject", model_grade="refurbish", created_at=T0)
    return {"p1": p1, "p2": p2, "p3": p3, "p4": p4, "p5": p5, "p6": p6, "r1": r1, "r2": r2}


def test_mistakenness_by_hand() -> None:
    p = probs(0.9, 0.08, 0.02)
    assert mistakenness(probabilities=p, model_grade="resell", other_grade=None) == pytest.approx(
        0.1
    )
    # A person says reject where the model put 2%: 1 - 0.9 * 0.02.
    assert mistakenness(
        probabilities=p, model_grade="resell", other_grade="reject"
    ) == pytest.approx(0.982)
    assert mistakenness(
        probabilities=p, model_grade="resell", other_grade="refurbish"
    ) == pytest.approx(1 - 0.9 * 0.08)
    # Agreement adds nothing.
    assert mistakenness(
        probabilities=p, model_grade="resell", other_grade="resell"
    ) == pytest.approx(0.1)


def test_queue_ranks_by_mistakenness_with_reasons(engine: Engine, seed: Seeder) -> None:
    ids = seed_queue(seed)
    with Session(engine) as session:
        queue = qa_queue(session=session, limit=50)
    assert [i.photo_id for i in queue] == [ids["p1"], ids["p3"], ids["p4"], ids["p2"]]
    by_photo = {i.photo_id: i for i in queue}
    first = by_photo[ids["p1"]]
    assert first.reasons == [REASON_OVERRIDE]
    assert first.human_grade == "reject" and first.model_grade == "resell"
    assert first.mistakenness == pytest.approx(1 - 0.95 * 0.01)
    assert first.rma == f"RMA-{ids['r1']:06d}"
    assert by_photo[ids["p3"]].reasons == [REASON_CROSS_SOURCE]
    assert by_photo[ids["p3"]].mistakenness == pytest.approx(1 - 0.80 * 0.15)
    assert by_photo[ids["p4"]].reasons == [REASON_CROSS_SOURCE]
    assert by_photo[ids["p4"]].mistakenness == pytest.approx(1 - 0.60 * 0.30)
    assert by_photo[ids["p2"]].reasons == [REASON_LOW_CONFIDENCE]
    assert by_photo[ids["p2"]].mistakenness == pytest.approx(0.45)
    assert ids["p5"] not in by_photo and ids["p6"] not in by_photo
    with Session(engine) as session:
        assert [i.photo_id for i in qa_queue(session=session, limit=2)] == [ids["p1"], ids["p3"]]


def test_label_flow_records_audit_and_leaves_the_queue(engine: Engine, seed: Seeder) -> None:
    ids = seed_queue(seed)
    with Session(engine) as session:
        label = add_label(
            session=session,
            photo_id=ids["p1"],
            grade="reject",
            reason="  crack on the back the model missed  ",
            labeled_by="qa",
        )
    assert label.model_grade == "resell" and label.grade == "reject"
    assert label.reason == "crack on the back the model missed"
    assert label.return_id == ids["r1"] and label.labeled_by == "qa"
    with Session(engine) as session:
        chain = verify_chain(session=session, return_id=ids["r1"])
        assert chain.valid
        event = chain.events[-1]
        assert event.action == "qa.relabel" and event.actor == "qa"
        assert event.before == {"photo_id": ids["p1"], "grade": "resell"}
        assert event.after is not None and event.after["grade"] == "reject"
        assert event.confidence == pytest.approx(0.95)
        queue = qa_queue(session=session)
        assert ids["p1"] not in [i.photo_id for i in queue]
        exported = list_labels(session=session, since=T0 + timedelta(days=1))
        assert [lb.photo_id for lb in exported] == [ids["p1"]]  # the seeded T0 label is older


@pytest.mark.parametrize(
    ("photo", "grade", "reason", "error"),
    [
        ("p1", "mint", "fine", InvalidInput),
        ("p1", "reject", "   ", InvalidInput),
        ("p1", "reject", "x" * 1001, InvalidInput),
        (None, "reject", "no such photo", NotFound),
    ],
)
def test_rejected_label_writes_nothing(
    engine: Engine, seed: Seeder, photo: str | None, grade: str, reason: str, error: type
) -> None:
    ids = seed_queue(seed)
    with Session(engine) as session, pytest.raises(error):
        add_label(
            session=session,
            photo_id=ids[photo] if photo else 999_999,
            grade=grade,
            reason=reason,
            labeled_by="qa",
        )
    with Session(engine) as session:
        assert len(session.exec(select(QaLabel)).all()) == 1  # only the seeded one
        assert len(verify_chain(session=session, return_id=ids["r1"]).events) == 0


def test_confusion_matrix_by_hand(engine: Engine, seed: Seeder) -> None:
    in_window = T0 + timedelta(days=10)
    r, i = seed.return_()
    pa = seed.photo(
        return_id=r,
        item_id=i,
        source="customer",
        grade="resell",
        probabilities=probs(0.9, 0.05, 0.05),
    )
    pb = seed.photo(
        return_id=r,
        item_id=i,
        source="customer",
        grade="resell",
        probabilities=probs(0.9, 0.05, 0.05),
    )
    pc = seed.photo(
        return_id=r,
        item_id=i,
        source="customer",
        grade="reject",
        probabilities=probs(0.1, 0.1, 0.8),
    )
    seed.label(photo_id=pa, grade="reject", model_grade="resell", created_at=in_window)
    # pb relabeled twice: the newest label (refurbish) is the one that counts.
    seed.label(photo_id=pb, grade="reject", model_grade="resell", created_at=in_window)
    seed.label(
        photo_id=pb,
        grade="refurbish",
        model_grade="resell",
        created_at=in_window + timedelta(hours=1),
    )
    seed.label(photo_id=pc, grade="reject", model_grade="reject", created_at=in_window)
    # Outside the period: ignored.
    seed.label(
        photo_id=pc, grade="resell", model_grade="reject", created_at=T0 + timedelta(days=40)
    )
    # Inspector verdicts: an override of a station refurbish to resell, and a confirmation.
    r2, i2 = seed.return_()
    seed.item_grade(
        return_id=r2, item_id=i2, source="station", grade="refurbish", created_at=in_window
    )
    seed.item_grade(
        return_id=r2,
        item_id=i2,
        source="inspector",
        grade="resell",
        decided_by="inspector",
        created_at=in_window,
    )
    r3, i3 = seed.return_()
    seed.item_grade(
        return_id=r3, item_id=i3, source="station", grade="reject", created_at=in_window
    )
    seed.item_grade(
        return_id=r3, item_id=i3, source="inspector", grade="reject", created_at=in_window
    )

    with Session(engine) as session:
        result = confusion_matrix(session=session, since=T0, until=T0 + timedelta(days=31))
    assert result.labels == ("resell", "refurbish", "reject")
    # rows human, columns model
    assert result.matrix == [
        [0, 1, 0],  # human resell: model said refurbish (override)
        [1, 0, 0],  # human refurbish: model said resell (pb's newest label)
        [1, 0, 2],  # human reject: pa (model resell), pc and the confirmation (model reject)
    ]
    assert result.count == 5


def test_confusion_period_must_be_ordered(engine: Engine) -> None:
    with Session(engine) as session, pytest.raises(InvalidInput):
        confusion_matrix(session=session, since=T0, until=T0 - timedelta(days=1))


def test_concurrent_relabels_on_one_return_all_land_on_one_chain(
    engine: Engine, seed: Seeder
) -> None:
    import threading

    return_id, item_id = seed.return_()
    photos = [
        seed.photo(
            return_id=return_id,
            item_id=item_id,
            source="customer",
            grade="resell",
            probabilities=probs(0.5, 0.3, 0.2),
        )
        for _ in range(6)
    ]
    barrier = threading.Barrier(len(photos))
    errors: list[BaseException] = []

    def relabel(photo_id: int) -> None:
        barrier.wait()
        try:
            with Session(engine) as session:
                add_label(
                    session=session,
                    photo_id=photo_id,
                    grade="refurbish",
                    reason="scuffed corners",
                    labeled_by="qa",
                )
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=relabel, args=(p,)) for p in photos]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with Session(engine) as session:
        chain = verify_chain(session=session, return_id=return_id)
        assert chain.valid and [e.seq for e in chain.events] == list(range(1, len(photos) + 1))
        assert len(list_labels(session=session)) == len(photos)
