"""Gathers the facts the pure decision functions need from the database: order lines, the
customer's history, the photos of a return and near-identical photos on other returns.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path

import numpy as np
from sqlalchemy import LargeBinary, func, or_, type_coerce
from sqlalchemy.orm import defer
from sqlmodel import Session, col, select

from inspection.decisions.anomaly import ANOMALY_MODEL_FILE, AnomalyModel, load_anomaly_model
from inspection.decisions.types import (
    CustomerHistory,
    GradeFacts,
    OrderContext,
    OrderLineFacts,
    PhotoEvidence,
    PhotoMatch,
    ReturnClaim,
)
from inspection.grading.types import ExifFacts
from inspection.store.models import (
    Customer,
    DecisionRecord,
    Inspection,
    Order,
    OrderLine,
    Photo,
    Return,
    ReturnItem,
    vector_from_bytes,
)

# Photos whose 64-bit perceptual hashes differ in at most this many bits are candidates for
# "the same picture" (re-encoded or resized copies stay within ~4); the policy's own, usually
# tighter, threshold then decides whether it counts as reuse.
PHASH_SEARCH_RADIUS = 8
# A past decision at or above this fraud score counts as a prior fraud flag on the customer.
PRIOR_FLAG_SCORE = 0.5


def line_facts(*, order: Order, line: OrderLine) -> OrderLineFacts:
    """An order line as the policy sees it."""
    return OrderLineFacts(
        sku=line.sku,
        category=line.category,
        price_cents=line.price_cents,
        currency=line.currency,
        quantity=line.quantity,
        final_sale=line.final_sale,
        ordered_at=order.ordered_at,
        delivered_at=order.delivered_at,
    )


def claim_facts(*, ret: Return, item: ReturnItem, session: Session | None = None) -> ReturnClaim:
    """What the customer claimed for one item (with units of that line already returned)."""
    previously = 0
    if session is not None:
        # Units of the same order line on the customer's other returns, unless those were
        # turned down: the quantity rule must not let one line be returned twice.
        previously = int(
            session.exec(
                select(func.coalesce(func.sum(ReturnItem.quantity), 0))
                .join(Return, col(Return.id) == col(ReturnItem.return_id))
                .where(
                    ReturnItem.order_line_id == item.order_line_id,
                    ReturnItem.return_id != ret.id,
                    col(Return.status) != "rejected",
                )
            ).one()
        )
    return ReturnClaim(
        reason_code=item.reason_code,  # type: ignore[arg-type]
        reason_text=item.reason_text,
        requested_at=ret.created_at,
        quantity=item.quantity,
        previously_returned_quantity=previously,
    )


@lru_cache(maxsize=4)
def _anomaly_model_at(path: Path, mtime: float) -> AnomalyModel | None:
    return load_anomaly_model(path)


def anomaly_model(*, model_dir: Path) -> AnomalyModel | None:
    """The exported order-history anomaly model beside the bundled models, if there is one."""
    path = Path(model_dir) / ANOMALY_MODEL_FILE
    mtime = path.stat().st_mtime if path.is_file() else 0.0
    return _anomaly_model_at(path, mtime)


def order_context(*, session: Session, order: Order) -> OrderContext:
    """Order-level facts for the fraud signals."""
    lines = session.exec(select(OrderLine).where(OrderLine.order_id == order.id)).all()
    return OrderContext(
        order_value_cents=sum(line.price_cents * line.quantity for line in lines),
        currency=order.currency,
        shipping_country=order.shipping_country,
        billing_country=order.billing_country,
        expedited_shipping=order.expedited_shipping,
        ordered_at=order.ordered_at,
        delivered_at=order.delivered_at,
    )


def customer_history(*, session: Session, ret: Return, now: datetime) -> CustomerHistory:
    """The customer's orders, other returns and earlier fraud flags, counted."""
    customer = session.get(Customer, ret.customer_id)
    assert customer is not None  # foreign key
    others = select(Return).where(Return.customer_id == ret.customer_id, Return.id != ret.id)

    def count_returns(since: datetime | None) -> int:
        query = select(func.count()).select_from(others.subquery())
        if since is not None:
            sub = others.where(Return.created_at >= since).subquery()
            query = select(func.count()).select_from(sub)
        return int(session.exec(query).one())

    orders_count = session.exec(
        select(func.count()).where(Order.customer_id == ret.customer_id)
    ).one()
    flags = session.exec(
        select(func.count(func.distinct(DecisionRecord.return_id)))
        .join(Return, col(Return.id) == DecisionRecord.return_id)
        .where(
            Return.customer_id == ret.customer_id,
            Return.id != ret.id,
            DecisionRecord.fraud_score >= PRIOR_FLAG_SCORE,
        )
    ).one()
    return CustomerHistory(
        customer_id=customer.id,  # type: ignore[arg-type]
        account_created_at=customer.created_at,
        orders_count=int(orders_count),
        returns_count=count_returns(None),
        returns_last_30d=count_returns(now - timedelta(days=30)),
        returns_last_90d=count_returns(now - timedelta(days=90)),
        prior_fraud_flags=int(flags),
    )


def _photo_grades(*, session: Session, photo_ids: list[int]) -> dict[int, Inspection]:
    if not photo_ids:
        return {}
    rows = session.exec(
        select(Inspection)
        .where(col(Inspection.photo_id).in_(photo_ids), Inspection.scope == "photo")
        .order_by(col(Inspection.id))
    ).all()
    return {row.photo_id: row for row in rows if row.photo_id is not None}


def return_photos(
    *,
    session: Session,
    return_id: int,
    source: str | None = None,
    item_id: int | None = None,
    with_embeddings: bool = True,
) -> list[Photo]:
    """Photos of a return (optionally of one source and item), oldest first, deleted included.

    `with_embeddings=False` leaves the 1280-float embedding unread (loaded only if touched):
    parsing it was most of the database time of an upload to a return with many photos.
    """
    query = select(Photo).where(Photo.return_id == return_id)
    if not with_embeddings:
        query = query.options(defer(Photo.embedding))  # type: ignore[arg-type]
    if source is not None:
        query = query.where(Photo.source == source)
    if item_id is not None:
        query = query.where(
            or_(col(Photo.return_item_id) == item_id, col(Photo.return_item_id).is_(None))
        )
    return list(session.exec(query.order_by(col(Photo.id))).all())


def photo_evidence(*, session: Session, photos: list[Photo]) -> list[PhotoEvidence]:
    """Photos as the fraud checks read them."""
    grades = _photo_grades(session=session, photo_ids=[p.id for p in photos if p.id is not None])
    evidence = []
    for photo in photos:
        graded = grades.get(photo.id)  # type: ignore[arg-type]
        evidence.append(
            PhotoEvidence(
                photo_id=photo.id,  # type: ignore[arg-type]
                source=photo.source,  # type: ignore[arg-type]
                sha256=photo.sha256,
                phash=photo.phash,
                exif=ExifFacts.model_validate(photo.exif or {}),
                grade=graded.grade if graded else None,  # type: ignore[arg-type]
                defect_types=[d.get("defect_type", "") for d in (graded.defects if graded else [])],
            )
        )
    return evidence


def hamming(a: str, b: str) -> int:
    """Bits that differ between two 64-bit hashes written as hex."""
    try:
        return (int(a, 16) ^ int(b, 16)).bit_count()
    except ValueError:
        return 64


def _similarities(mine: list[float] | None, stored: list[bytes | None]) -> dict[int, float]:
    """Cosine similarity of `mine` to each stored embedding of the same size, by index.

    `stored` holds the raw Float32Vector bytes of a page of candidates: joined and read as one
    matrix, they never become Python floats.
    """
    if not mine:
        return {}
    vector = np.asarray(mine, dtype=np.float32)
    comparable = [(i, e) for i, e in enumerate(stored) if e and len(e) == vector.nbytes]
    if not comparable:
        return {}
    matrix = vector_from_bytes(b"".join(e for _, e in comparable))
    matrix = matrix.reshape(len(comparable), vector.size)
    norms = np.linalg.norm(matrix, axis=1) * float(np.linalg.norm(vector))
    with np.errstate(divide="ignore", invalid="ignore"):
        sims = np.where(norms > 0, matrix @ vector / norms, 0.0)
    return {i: round(float(v), 6) for (i, _), v in zip(comparable, sims, strict=True)}


# Candidates are read this many at a time (5 MB of embeddings a page): holding every stored
# customer photo's embedding at once grew the server's memory with the database (the soak's
# RSS climbed with each return opened).
MATCH_CHUNK = 1024


def photo_matches(
    *, session: Session, ret: Return, photos: list[Photo], min_similarity: float
) -> list[PhotoMatch]:
    """Near-identical photos on other returns: close perceptual hash or embedding."""
    if not photos:
        return []
    # Every other return's customer photo is a candidate; deleted photos keep their hashes for
    # this. Station photos are not: a customer never sees them, and the station's fixed camera
    # and backdrop make every unit of a model look alike, which read as "reuse" before.
    query = (
        select(  # type: ignore[call-overload]
            Photo.id,
            Photo.return_id,
            Photo.phash,
            # The stored bytes as they are: the search reads them as one matrix per page.
            type_coerce(Photo.embedding, LargeBinary),
            Return.customer_id,
        )
        .join(Return, col(Return.id) == Photo.return_id)
        .where(Photo.return_id != ret.id, Photo.source == "customer")
        .order_by(col(Photo.id))
        .execution_options(yield_per=MATCH_CHUNK)
    )
    matches: list[PhotoMatch] = []
    for candidates in session.exec(query).partitions(MATCH_CHUNK):
        embeddings = [c[3] for c in candidates]
        for photo in photos:
            similarities = _similarities(photo.embedding, embeddings)
            for index, (other_id, other_return, other_phash, _, other_customer) in enumerate(
                candidates
            ):
                distance = hamming(photo.phash, other_phash)
                similarity = similarities.get(index)
                if distance <= PHASH_SEARCH_RADIUS or (
                    similarity is not None and similarity >= min_similarity
                ):
                    matches.append(
                        PhotoMatch(
                            photo_id=photo.id,  # type: ignore[arg-type]
                            matched_photo_id=other_id,
                            matched_return_id=other_return,
                            matched_customer_id=other_customer,
                            same_customer=other_customer == ret.customer_id,
                            phash_distance=distance,
                            embedding_similarity=similarity,
                        )
                    )
    matches.sort(key=lambda m: (m.photo_id, m.matched_photo_id))
    return matches


def latest_item_grade(
    *, session: Session, return_id: int, sources: tuple[str, ...], item_id: int | None = None
) -> Inspection | None:
    """The newest item-level grade from the given sources (for one item or the whole return)."""
    query = select(Inspection).where(
        Inspection.return_id == return_id,
        Inspection.scope == "item",
        col(Inspection.source).in_(sources),
    )
    if item_id is not None:
        query = query.where(
            or_(
                col(Inspection.return_item_id) == item_id,
                col(Inspection.return_item_id).is_(None),
            )
        )
    return session.exec(query.order_by(col(Inspection.id).desc())).first()


def grade_facts(row: Inspection | None) -> GradeFacts | None:
    """An item grade as the decision engine takes it."""
    if row is None:
        return None
    return GradeFacts(
        grade=row.grade,  # type: ignore[arg-type]
        confidence=min(max(row.confidence, 0.0), 1.0),
        needs_review=row.needs_review,
        reason_codes=list(row.reason_codes),
        model_version=row.model_version,
        decided_by="inspector" if row.decided_by == "inspector" else "model",
    )
