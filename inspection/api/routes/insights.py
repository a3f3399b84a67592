"""Routes for insights: the exception review queue and the dashboard statistics."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from inspection.api.deps import Principal, SessionDep, StaffDep, require_roles
from inspection.returns import insights

router = APIRouter(tags=["insights"])

ReviewerDep = Annotated[Principal, require_roles("qa", "station")]


class ReviewPublic(BaseModel):
    return_id: int
    rma: str | None
    value_cents: int
    currency: str
    fraud_score: float
    priority: float = Field(description="value x risk, in minor units")
    reason_codes: list[str]
    fraud_signals: list[dict[str, Any]]
    grade: str | None
    grade_confidence: float | None
    created_at: datetime


class ReviewsPage(BaseModel):
    data: list[ReviewPublic]
    count: int


class StatsPublic(BaseModel):
    returns: int
    automation_rate: float | None
    manual_review_rate: float | None
    refund_cycle_hours_p50: float | None
    grade_mix: dict[str, int]
    top_defects_by_sku: list[dict[str, Any]]
    top_reasons_by_sku: list[dict[str, Any]]


@router.get("/reviews", response_model=ReviewsPage)
def reviews(
    session: SessionDep, _: ReviewerDep, limit: Annotated[int, Query(ge=1, le=500)] = 100
) -> ReviewsPage:
    """Returns in `needs_review`, most money at risk first, with their fraud evidence."""
    entries = insights.review_queue(session=session, limit=limit)
    return ReviewsPage(
        data=[ReviewPublic.model_validate(e, from_attributes=True) for e in entries],
        count=len(entries),
    )


@router.get("/stats", response_model=StatsPublic)
def stats(
    session: SessionDep,
    _: StaffDep,
    since: datetime | None = None,
    until: datetime | None = None,
) -> StatsPublic:
    """Automation and review rates, refund cycle time, grade mix, top defects and reasons."""
    result = insights.dashboard_stats(session=session, since=since, until=until)
    return StatsPublic.model_validate(result, from_attributes=True)
