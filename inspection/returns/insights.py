"""Numbers for people running returns: the exception review queue and the dashboard statistics.

Definitions (over a period `[since, until)`):
- `returns`: returns opened in the period;
- `automation_rate`: decisions made in the period by the engine alone (`decided_by = model`)
  that settled the return (any outcome but `needs_review`), over all decisions in the period;
- `manual_review_rate`: returns decided in the period that were routed to review at least once,
  over returns decided in the period;
- `refund_cycle_hours_p50`: median hours from a return being opened to its first paid refund,
  over refunds paid in the period;
- `grade_mix`: returns opened in the period by grade (the final grade when inspected, else the
  newest item grade);
- `top_defects_by_sku`: defect types found on photos of returns opened in the period, counted
  once per photo, the most frequent per SKU first;
- `top_reasons_by_sku`: customers' reason codes on items of returns opened in the period.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import case, distinct, func
from sqlmodel import Session, col, select

from inspection.decisions.review_queue import rank_for_review
from inspection.decisions.types import FraudSignal, ReviewCandidate
from inspection.errors import InvalidInput
from inspection.store.models import (
    DecisionRecord,
    Inspection,
    OrderLine,
    Photo,
    Refund,
    Return,
    ReturnItem,
)

# How many (sku, value) rows each "top ... by SKU" list keeps per SKU, and in total.
TOP_PER_SKU = 3
TOP_ROWS = 50
SECONDS_PER_HOUR = 3600.0


@dataclass(frozen=True)
class ReviewEntry:
    """A `needs_review` return in the exception queue, with the evidence behind it."""

    return_id: int
    rma: str | None
    value_cents: int
    currency: str
    fraud_score: float
    priority: float
    reason_codes: list[str]
    fraud_signals: list[dict[str, Any]]
    grade: str | None
    grade_confidence: float | None
    created_at: datetime


def review_queue(*, session: Session, limit: int = 100) -> list[ReviewEntry]:
    """Returns waiting for a person, ordered by value x risk (C's `rank_for_review`)."""
    waiting = session.exec(select(Return).where(Return.status == "needs_review")).all()
    if not waiting:
        return []
    ids = [r.id for r in waiting if r.id is not None]
    values = session.exec(
        select(
            ReturnItem.return_id,
            func.sum(OrderLine.price_cents * ReturnItem.quantity),
            func.min(OrderLine.currency),
        )
        .join(OrderLine, col(OrderLine.id) == ReturnItem.order_line_id)
        .where(col(ReturnItem.return_id).in_(ids))
        .group_by(col(ReturnItem.return_id))
    ).all()
    value_of = {rid: (int(total or 0), currency) for rid, total, currency in values}
    decisions: dict[int, DecisionRecord] = {}
    for decision_row in session.exec(
        select(DecisionRecord)
        .where(col(DecisionRecord.return_id).in_(ids))
        .order_by(col(DecisionRecord.id))
    ).all():
        decisions[decision_row.return_id] = decision_row
    grades: dict[int, Inspection] = {}
    for row in session.exec(
        select(Inspection)
        .where(col(Inspection.return_id).in_(ids), Inspection.scope == "item")
        .order_by(col(Inspection.id))
    ).all():
        grades[row.return_id] = row
    by_id = {r.id: r for r in waiting}
    candidates = []
    for rid in ids:
        decision = decisions.get(rid)
        grade = grades.get(rid)
        value, currency = value_of.get(rid, (0, "EUR"))
        candidates.append(
            ReviewCandidate(
                return_id=rid,
                value_cents=value,
                currency=currency,
                fraud_score=min(max(decision.fraud_score if decision else 0.0, 0.0), 1.0),
                grade_confidence=min(max(grade.confidence, 0.0), 1.0) if grade else None,
                reason_codes=list(decision.reason_codes) if decision else [],
                signals=[FraudSignal.model_validate(s) for s in (decision.fraud_signals or [])]
                if decision
                else [],
            )
        )
    entries = []
    for ranked in rank_for_review(candidates)[: max(1, limit)]:
        ret = by_id[ranked.return_id]
        grade = grades.get(ranked.return_id)
        entries.append(
            ReviewEntry(
                return_id=ranked.return_id,
                rma=ret.rma,
                value_cents=ranked.value_cents,
                currency=ranked.currency,
                fraud_score=ranked.fraud_score,
                priority=ranked.priority,
                reason_codes=ranked.reason_codes,
                fraud_signals=[s.model_dump(mode="json") for s in ranked.signals],
                grade=grade.grade if grade else None,
                grade_confidence=ranked.grade_confidence,
                created_at=ret.created_at,
            )
        )
    return entries


@dataclass(frozen=True)
class Stats:
    """The dashboard's numbers for one period (see the module docstring for definitions)."""

    returns: int
    automation_rate: float | None
    manual_review_rate: float | None
    refund_cycle_hours_p50: float | None
    grade_mix: dict[str, int]
    top_defects_by_sku: list[dict[str, Any]]
    top_reasons_by_sku: list[dict[str, Any]]


def as_utc(value: datetime | None) -> datetime | None:
    """A period bound as aware UTC; a bound given without a zone is read as UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def check_period(*, since: datetime | None, until: datetime | None) -> None:
    """Refuses a period that ends before it starts."""
    if since is not None and until is not None and as_utc(until) <= as_utc(since):  # type: ignore[operator]
        raise InvalidInput(
            "the period ends before it starts",
            hint="send since earlier than until (ISO-8601 with a time zone)",
            code="bad_period",
        )


def _window(column: Any, since: datetime | None, until: datetime | None) -> list[Any]:
    since, until = as_utc(since), as_utc(until)
    check_period(since=since, until=until)
    conditions = []
    if since is not None:
        conditions.append(column >= since)
    if until is not None:
        conditions.append(column < until)
    return conditions


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _top_by_sku(counts: dict[tuple[str, str], int], key: str) -> list[dict[str, Any]]:
    per_sku: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for (sku, value), n in counts.items():
        per_sku[sku].append((value, n))
    rows: list[dict[str, Any]] = []
    for sku, values in per_sku.items():
        for value, n in sorted(values, key=lambda v: (-v[1], v[0]))[:TOP_PER_SKU]:
            rows.append({"sku": sku, key: value, "n": n})
    rows.sort(key=lambda r: (-r["n"], r["sku"], r[key]))
    return rows[:TOP_ROWS]


def dashboard_stats(
    *, session: Session, since: datetime | None = None, until: datetime | None = None
) -> Stats:
    """Automation, review rate, refund cycle time, grade mix and per-SKU tops for a period."""
    opened = _window(col(Return.created_at), since, until)
    returns_count = session.exec(select(func.count()).select_from(Return).where(*opened)).one()

    decided = _window(col(DecisionRecord.created_at), since, until)
    automated_case = case(
        (
            (col(DecisionRecord.decided_by) == "model")
            & (col(DecisionRecord.outcome) != "needs_review"),
            1,
        ),
        else_=0,
    )
    total_decisions, automated = session.exec(
        select(func.count(), func.coalesce(func.sum(automated_case), 0))
        .select_from(DecisionRecord)
        .where(*decided)
    ).one()
    reviewed_id = case(
        (col(DecisionRecord.outcome) == "needs_review", col(DecisionRecord.return_id)),
        else_=None,
    )
    decided_returns, reviewed_returns = session.exec(
        select(
            func.count(distinct(col(DecisionRecord.return_id))),
            func.count(distinct(reviewed_id)),
        ).where(*decided)
    ).one()

    # First paid refund per return; its cycle is measured from the return being opened.
    paid_at = func.min(func.coalesce(Refund.paid_at, Refund.created_at))
    first_paid = (
        select(Refund.return_id, paid_at.label("paid_at"))
        .where(Refund.status == "paid")
        .group_by(col(Refund.return_id))
        .subquery()
    )
    cycles = session.exec(
        select(Return.created_at, first_paid.c.paid_at)
        .join(first_paid, first_paid.c.return_id == Return.id)
        .where(*_window(first_paid.c.paid_at, since, until))
    ).all()
    hours = [
        (_aware(paid) - _aware(created)).total_seconds() / SECONDS_PER_HOUR
        for created, paid in cycles
    ]
    cycle_p50 = round(statistics.median(hours), 2) if hours else None

    # Grade mix: final grade, else the newest item grade of the return.
    newest_item = (
        select(Inspection.return_id, func.max(Inspection.id).label("inspection_id"))
        .where(Inspection.scope == "item")
        .group_by(col(Inspection.return_id))
        .subquery()
    )
    graded = session.exec(
        select(Return.final_grade, Inspection.grade)
        .outerjoin(newest_item, newest_item.c.return_id == Return.id)
        .outerjoin(Inspection, col(Inspection.id) == newest_item.c.inspection_id)
        .where(*opened)
    ).all()
    grade_mix = Counter(final or latest for final, latest in graded if (final or latest))

    reasons = session.exec(
        select(OrderLine.sku, ReturnItem.reason_code, func.count())
        .join(ReturnItem, col(ReturnItem.order_line_id) == OrderLine.id)
        .join(Return, col(Return.id) == ReturnItem.return_id)
        .where(*opened)
        .group_by(col(OrderLine.sku), col(ReturnItem.reason_code))
    ).all()
    reason_counts = {(sku, code): int(n) for sku, code, n in reasons}

    # Defects live in a JSON list per photo grade, so they are counted here rather than in SQL.
    # A photo without an item id counts for every SKU of its return.
    skus_of_item = {
        item_id: sku
        for item_id, sku in session.exec(
            select(ReturnItem.id, OrderLine.sku)
            .join(OrderLine, col(OrderLine.id) == ReturnItem.order_line_id)
            .join(Return, col(Return.id) == ReturnItem.return_id)
            .where(*opened)
        ).all()
    }
    skus_of_return: dict[int, set[str]] = defaultdict(set)
    for return_id, sku in session.exec(
        select(ReturnItem.return_id, OrderLine.sku)
        .join(OrderLine, col(OrderLine.id) == ReturnItem.order_line_id)
        .join(Return, col(Return.id) == ReturnItem.return_id)
        .where(*opened)
    ).all():
        skus_of_return[return_id].add(sku)
    newest_photo_grade = (
        select(func.max(Inspection.id))
        .where(Inspection.scope == "photo")
        .group_by(col(Inspection.photo_id))
    )
    defect_rows = session.exec(
        select(Photo.return_id, Photo.return_item_id, Inspection.defects)
        .join(Inspection, col(Inspection.photo_id) == Photo.id)
        .join(Return, col(Return.id) == Photo.return_id)
        .where(col(Inspection.id).in_(newest_photo_grade), *opened)
    ).all()
    defect_counts: Counter[tuple[str, str]] = Counter()
    for return_id, item_id, defects in defect_rows:
        types = {d.get("defect_type") for d in (defects or []) if d.get("defect_type")}
        skus = {skus_of_item[item_id]} if item_id in skus_of_item else skus_of_return[return_id]
        for sku in skus:
            for defect_type in types:
                defect_counts[(sku, defect_type)] += 1

    return Stats(
        returns=int(returns_count),
        automation_rate=_rate(int(automated), int(total_decisions)),
        manual_review_rate=_rate(int(reviewed_returns), int(decided_returns)),
        refund_cycle_hours_p50=cycle_p50,
        grade_mix={g: grade_mix[g] for g in sorted(grade_mix)},
        top_defects_by_sku=_top_by_sku(dict(defect_counts), "defect_type"),
        top_reasons_by_sku=_top_by_sku(reason_counts, "reason_code"),
    )


def _aware(value: datetime) -> datetime:
    # Belt and braces: an aggregate that loses the column type comes back naive on SQLite.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value
