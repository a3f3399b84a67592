"""QA review of the model's grades: the queue of likely misgrades, relabels (the corrections
that feed retraining) and the confusion matrix of model vs human grades.

Mistakenness (how likely the model's grade of a photo is wrong, 0..1) joins two independent
hints with a noisy-OR, `1 - (1 - uncertainty) * (1 - disagreement)`:
- uncertainty = `1 - p(model grade)`: the probability mass the model put elsewhere;
- disagreement = `1 - p(other grade)` where a person (inspector override) or the other photo
  source (customer vs station) gave another grade: how little the model believed that grade.
  A confident model contradicted by a person therefore ranks highest: either the model is
  confidently wrong (the most useful retraining example) or the person erred.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import case, distinct, func
from sqlmodel import Session, col, select

from inspection.errors import InvalidInput, NotFound
from inspection.grading.types import GRADES, ReviewThresholds
from inspection.returns.audit import begin_write, record_event
from inspection.returns.insights import as_utc, check_period
from inspection.store.models import Inspection, Photo, Return
from inspection.store.records import QaLabel

REASON_LOW_CONFIDENCE = "low_confidence"
REASON_OVERRIDE = "inspector_override"
REASON_CROSS_SOURCE = "customer_station_disagreement"
# Below this grade confidence a photo is worth a second look; the same default the policy
# uses to send an item grade to review.
LOW_CONFIDENCE = ReviewThresholds().min_confidence
MAX_QUEUE = 500
MAX_REASON = 1000  # the qa_labels.reason column


def mistakenness(
    *, probabilities: dict[str, float], model_grade: str, other_grade: str | None
) -> float:
    """How likely the model's grade is wrong (noisy-OR of uncertainty and disagreement), 0..1."""
    p_model = _clip(probabilities.get(model_grade, 0.0))
    uncertainty = 1.0 - p_model
    disagreement = 0.0
    if other_grade is not None and other_grade != model_grade:
        disagreement = 1.0 - _clip(probabilities.get(other_grade, 0.0))
    return round(1.0 - (1.0 - uncertainty) * (1.0 - disagreement), 6)


def _clip(value: float) -> float:
    return min(max(float(value), 0.0), 1.0)


def grade_distance(a: str | None, b: str | None) -> int:
    """Steps between two grades (resell -> reject is 2): a far misgrade costs more money."""
    if a not in GRADES or b not in GRADES:
        return 0
    return abs(GRADES.index(a) - GRADES.index(b))


@dataclass
class QaQueueItem:
    """One photo whose model grade QA should check."""

    photo_id: int
    return_id: int
    rma: str | None
    source: str
    model_grade: str
    human_grade: str | None
    confidence: float
    probabilities: dict[str, float]
    defects: list[dict[str, Any]]
    reasons: list[str] = field(default_factory=list)
    mistakenness: float = 0.0
    model_version: str | None = None


def _latest_by(rows: list[Inspection], key: str) -> dict[Any, Inspection]:
    latest: dict[Any, Inspection] = {}
    for row in sorted(rows, key=lambda r: r.id or 0):
        latest[getattr(row, key)] = row
    return latest


def qa_queue(
    *, session: Session, limit: int = 50, low_confidence: float = LOW_CONFIDENCE
) -> list[QaQueueItem]:
    """Photos where the model is unsure or a person or the other source disagrees, worst first."""
    limit = max(1, min(limit, MAX_QUEUE))
    labeled = select(QaLabel.photo_id)
    # Returns where a second opinion exists (an inspector verdict, or item grades from both
    # photo sources), found in SQL so only their item grades are loaded.
    second_opinion = (
        select(Inspection.return_id)
        .where(
            Inspection.scope == "item",
            col(Inspection.source).in_(("customer", "station", "inspector")),
        )
        .group_by(col(Inspection.return_id))
        .having(
            (func.count(distinct(col(Inspection.source))) >= 2)
            | (func.max(case((col(Inspection.source) == "inspector", 1), else_=0)) == 1)
        )
    )
    item_rows = list(
        session.exec(
            select(Inspection).where(
                Inspection.scope == "item",
                col(Inspection.source).in_(("customer", "station", "inspector")),
                col(Inspection.return_id).in_(second_opinion),
            )
        ).all()
    )
    overrides: dict[tuple[int, int | None], str] = {}
    by_source: dict[tuple[int, int | None], dict[str, Inspection]] = defaultdict(dict)
    for row in sorted(item_rows, key=lambda r: r.id or 0):
        key = (row.return_id, row.return_item_id)
        if row.source == "inspector":
            if row.decided_by == "inspector":
                overrides[key] = row.grade
            else:
                overrides.pop(key, None)  # a later confirmation replaces an earlier override
        else:
            by_source[key][row.source] = row
    disputed = {k[0] for k in overrides} | {
        k[0] for k, sources in by_source.items() if len(sources) == 2
    }
    query = (
        select(Inspection, Photo, Return)
        .join(Photo, col(Photo.id) == Inspection.photo_id)
        .join(Return, col(Return.id) == Inspection.return_id)
        .where(
            Inspection.scope == "photo",
            col(Photo.deleted_at).is_(None),
            col(Inspection.photo_id).not_in(labeled),
        )
    )
    condition = col(Inspection.confidence) < low_confidence
    if disputed:
        condition = condition | col(Inspection.return_id).in_(sorted(disputed))
    rows = session.exec(query.where(condition)).all()
    latest: dict[int, tuple[Inspection, Photo, Return]] = {}
    for inspection, photo, ret in sorted(rows, key=lambda r: r[0].id or 0):
        latest[photo.id or 0] = (inspection, photo, ret)

    items: list[QaQueueItem] = []
    for inspection, photo, ret in latest.values():
        key = (ret.id or 0, photo.return_item_id)
        reasons: list[str] = []
        human = _match(overrides, key) if photo.source == "station" else None
        other: str | None = None
        if inspection.confidence < low_confidence:
            reasons.append(REASON_LOW_CONFIDENCE)
        if human is not None and human != inspection.grade:
            reasons.append(REASON_OVERRIDE)
            other = human
        sources = _match(by_source, key) or {}
        other_source = "customer" if photo.source == "station" else "station"
        if len(sources) == 2 and sources["customer"].grade != sources["station"].grade:
            reasons.append(REASON_CROSS_SOURCE)
            if other is None and sources[other_source].grade != inspection.grade:
                other = sources[other_source].grade
        if not reasons:
            continue
        items.append(
            QaQueueItem(
                photo_id=photo.id or 0,
                return_id=ret.id or 0,
                rma=ret.rma,
                source=photo.source,
                model_grade=inspection.grade,
                human_grade=human,
                confidence=float(inspection.confidence),
                probabilities=dict(inspection.probabilities),
                defects=list(inspection.defects),
                reasons=reasons,
                mistakenness=mistakenness(
                    probabilities=dict(inspection.probabilities) or {inspection.grade: 1.0},
                    model_grade=inspection.grade,
                    other_grade=other,
                ),
                model_version=inspection.model_version,
            )
        )
    items.sort(
        key=lambda i: (
            -i.mistakenness,
            -grade_distance(i.model_grade, i.human_grade),
            -len(i.reasons),
            i.photo_id,
        )
    )
    return items[:limit]


def _match(table: dict[tuple[int, int | None], Any], key: tuple[int, int | None]) -> Any:
    # A grade recorded for the whole return (no item id) applies to each of its items.
    if key in table:
        return table[key]
    return table.get((key[0], None))


def latest_photo_grade(*, session: Session, photo_id: int) -> Inspection | None:
    """The model's newest grade of one photo."""
    return session.exec(
        select(Inspection)
        .where(Inspection.photo_id == photo_id, Inspection.scope == "photo")
        .order_by(col(Inspection.id).desc())
    ).first()


def add_label(
    *, session: Session, photo_id: int, grade: str, reason: str, labeled_by: str
) -> QaLabel:
    """Records a QA relabel of a photo and its audit event, and commits both together."""
    if grade not in GRADES:
        raise InvalidInput(
            f"unknown grade {grade!r}", hint=f"use one of: {', '.join(GRADES)}", code="bad_grade"
        )
    reason = reason.strip()
    if "\x00" in reason:
        raise InvalidInput("the reason contains a NUL character", hint="send plain text")
    if not reason or len(reason) > MAX_REASON:
        raise InvalidInput(
            f"a relabel needs a reason of 1 to {MAX_REASON} characters",
            hint="say briefly what the model missed or got wrong",
        )
    begin_write(session=session)
    photo = session.get(Photo, photo_id)
    if photo is None:
        raise NotFound(f"no photo {photo_id}", hint="take photo ids from GET /v1/qa/queue")
    # Lock the return while its audit chain grows (PostgreSQL; SQLite holds its write lock).
    session.exec(select(Return).where(Return.id == photo.return_id).with_for_update()).first()
    model = latest_photo_grade(session=session, photo_id=photo_id)
    label = QaLabel(
        photo_id=photo_id,
        return_id=photo.return_id,
        grade=grade,
        model_grade=model.grade if model else None,
        reason=reason,
        labeled_by=labeled_by,
    )
    session.add(label)
    session.flush()
    record_event(
        session=session,
        return_id=photo.return_id,
        actor=labeled_by,
        action="qa.relabel",
        before={"photo_id": photo_id, "grade": label.model_grade},
        after={"photo_id": photo_id, "grade": grade, "reason": reason, "label_id": label.id},
        model_version=model.model_version if model else None,
        confidence=model.confidence if model else None,
    )
    session.commit()
    session.refresh(label)
    return label


def list_labels(*, session: Session, since: datetime | None = None) -> list[QaLabel]:
    """QA labels (oldest first), optionally only those created at or after `since`."""
    query = select(QaLabel)
    since = as_utc(since)
    if since is not None:
        query = query.where(col(QaLabel.created_at) >= since)
    return list(session.exec(query.order_by(col(QaLabel.id))).all())


@dataclass(frozen=True)
class ConfusionMatrix:
    """Counts of (human grade, model grade) pairs; rows human, columns model."""

    labels: tuple[str, ...]
    matrix: list[list[int]]
    count: int


def confusion_matrix(
    *, session: Session, since: datetime | None = None, until: datetime | None = None
) -> ConfusionMatrix:
    """Model vs human grades in a period, from QA labels and inspector verdicts at the station.

    Each QA label is one pair (the photo's model grade vs the label; the newest label of a photo
    wins). Each inspector verdict on an item is one pair: a confirmation counts as agreement, an
    override pairs the inspector's grade with the station grade it replaced.
    """
    since, until = as_utc(since), as_utc(until)
    check_period(since=since, until=until)
    index = {g: i for i, g in enumerate(GRADES)}
    matrix = [[0] * len(GRADES) for _ in GRADES]
    pairs: list[tuple[str, str]] = []

    labels = select(QaLabel)
    if since is not None:
        labels = labels.where(col(QaLabel.created_at) >= since)
    if until is not None:
        labels = labels.where(col(QaLabel.created_at) < until)
    newest: dict[int, QaLabel] = {}
    for label in session.exec(labels.order_by(col(QaLabel.id))).all():
        newest[label.photo_id] = label
    pairs.extend((lb.grade, lb.model_grade) for lb in newest.values() if lb.model_grade)

    verdicts = select(Inspection).where(
        Inspection.scope == "item", Inspection.source == "inspector"
    )
    if since is not None:
        verdicts = verdicts.where(col(Inspection.created_at) >= since)
    if until is not None:
        verdicts = verdicts.where(col(Inspection.created_at) < until)
    verdict_rows = list(session.exec(verdicts.order_by(col(Inspection.id))).all())
    overridden = sorted({v.return_id for v in verdict_rows if v.decided_by == "inspector"})
    # The station grades of the overridden returns, in one query rather than one per verdict.
    station_rows = (
        session.exec(
            select(Inspection)
            .where(
                col(Inspection.return_id).in_(overridden),
                Inspection.scope == "item",
                Inspection.source == "station",
            )
            .order_by(col(Inspection.id))
        ).all()
        if overridden
        else []
    )
    for verdict in verdict_rows:
        if verdict.decided_by != "inspector":
            pairs.append((verdict.grade, verdict.grade))
            continue
        # The newest station grade of the same item (or of the whole return) before the verdict.
        replaced = [
            row.grade
            for row in station_rows
            if row.return_id == verdict.return_id
            and (row.id or 0) < (verdict.id or 0)
            and row.return_item_id in (verdict.return_item_id, None)
        ]
        if replaced:
            pairs.append((verdict.grade, replaced[-1]))

    count = 0
    for human, model in pairs:
        if human in index and model in index:
            matrix[index[human]][index[model]] += 1
            count += 1
    return ConfusionMatrix(labels=GRADES, matrix=matrix, count=count)
