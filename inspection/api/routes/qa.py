"""Routes for QA: the queue of likely misgrades, relabels, their export and the confusion matrix."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, status
from pydantic import BaseModel, ConfigDict, Field

from inspection.api.deps import QaDep, SessionDep
from inspection.grading.types import GRADES, Grade
from inspection.returns import qa
from inspection.returns.schemas import MAX_ID
from inspection.store.records import QaLabel

router = APIRouter(tags=["qa"])


class QaQueueEntry(BaseModel):
    photo_id: int
    return_id: int
    rma: str | None
    source: str
    model_grade: str
    human_grade: str | None
    confidence: float
    probabilities: dict[str, float]
    defects: list[dict[str, object]]
    reasons: list[str]
    mistakenness: float = Field(description="0..1, how likely the model's grade is wrong")
    model_version: str | None
    image_url: str
    annotated_url: str


class QaQueuePage(BaseModel):
    data: list[QaQueueEntry]
    count: int = Field(description="entries in the whole queue, beyond `limit`")


class LabelCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    photo_id: int = Field(ge=1, le=MAX_ID)
    grade: Grade
    reason: str = Field(min_length=3, max_length=1000)


class LabelPublic(BaseModel):
    id: int
    photo_id: int
    return_id: int | None
    grade: str
    model_grade: str | None
    reason: str
    labeled_by: str
    created_at: datetime


class ConfusionPublic(BaseModel):
    labels: list[str]
    matrix: list[list[int]] = Field(description="rows: human grade, columns: model grade")
    count: int


def _label_public(label: QaLabel) -> LabelPublic:
    return LabelPublic.model_validate(label, from_attributes=True)


@router.get("/qa/queue", response_model=QaQueuePage)
def qa_queue(
    session: SessionDep, _: QaDep, limit: Annotated[int, Query(ge=1, le=qa.MAX_QUEUE)] = 50
) -> QaQueuePage:
    """Photos most likely misgraded, highest mistakenness first (labeled photos leave it)."""
    items = qa.qa_queue(session=session, limit=qa.MAX_QUEUE)
    return QaQueuePage(
        data=[
            QaQueueEntry(
                **{k: v for k, v in vars(item).items()},
                image_url=f"/v1/photos/{item.photo_id}/image",
                annotated_url=f"/v1/photos/{item.photo_id}/annotated",
            )
            for item in items[:limit]
        ],
        count=len(items),
    )


@router.post("/qa/labels", status_code=status.HTTP_201_CREATED, response_model=LabelPublic)
def add_label(body: LabelCreate, session: SessionDep, principal: QaDep) -> LabelPublic:
    """Relabels a photo with a reason; the label feeds retraining and the audit chain."""
    label = qa.add_label(
        session=session,
        photo_id=body.photo_id,
        grade=body.grade,
        reason=body.reason,
        labeled_by=principal.actor,
    )
    return _label_public(label)


@router.get("/qa/labels/export", response_model=list[LabelPublic])
def export_labels(
    session: SessionDep, _: QaDep, since: datetime | None = None
) -> list[LabelPublic]:
    """All QA labels (optionally since a time) as a JSON list, oldest first."""
    return [_label_public(label) for label in qa.list_labels(session=session, since=since)]


@router.get("/qa/confusion", response_model=ConfusionPublic)
def confusion(
    session: SessionDep,
    _: QaDep,
    since: datetime | None = None,
    until: datetime | None = None,
) -> ConfusionPublic:
    """Model vs human grades over a period (QA labels and inspector verdicts)."""
    result = qa.confusion_matrix(session=session, since=since, until=until)
    return ConfusionPublic(labels=list(GRADES), matrix=result.matrix, count=result.count)
