"""Builds the public views of a return (ReturnPublic, PhotoPublic, DecisionPublic...) from rows;
the only place table models are turned into what callers see.
"""

from __future__ import annotations

from sqlmodel import Session, col, select

from inspection.returns import facts
from inspection.returns.lifecycle import ACTIONS
from inspection.returns.refunds import INSTANT_REFUND_STATUSES, latest_refund
from inspection.returns.schemas import (
    DecisionPublic,
    DefectPublic,
    FraudSignalPublic,
    ItemGradePublic,
    LabelPublic,
    PhotoPublic,
    QualityPublic,
    RefundPublic,
    RefundQuotePublic,
    ReturnItemPublic,
    ReturnPublic,
    ReturnSummary,
)
from inspection.returns.service import latest_decision, return_items
from inspection.store.models import (
    DecisionRecord,
    Inspection,
    Order,
    Photo,
    Refund,
    Return,
    ShippingLabel,
)

# Reason codes a customer may see: eligibility results and plain outcomes, never fraud signals.
CUSTOMER_REASON_CODES = frozenset(
    {
        "eligible",
        "auto_approved",
        "instant_refund",
        "manual_approve",
        "manual_reject",
        "outside_return_window",
        "claim_before_order",
        "quantity_exceeds_purchased",
        "final_sale",
        "non_returnable_category",
        "condition_not_accepted",
        "above_auto_approve_limit",
    }
)

# Once the parcel is in, the station's photos describe the item; before that, the customer's.
AFTER_RECEIPT = ("item_received", "inspected", "refunded", "closed")


def photo_public(*, photo: Photo, grade: Inspection | None) -> PhotoPublic:
    """A photo with its grade; image URLs only while the image is still stored."""
    stored = photo.deleted_at is None and photo.blob_key is not None
    return PhotoPublic(
        id=photo.id,  # type: ignore[arg-type]
        return_item_id=photo.return_item_id,
        source=photo.source,
        sha256=photo.sha256,
        width=photo.width,
        height=photo.height,
        quality=QualityPublic(
            passed=photo.quality_passed,
            flags=list(photo.quality_flags),
            advice=list(photo.quality_advice),
        ),
        grade=grade.grade if grade else None,
        probabilities=dict(grade.probabilities) if grade else {},
        confidence=grade.confidence if grade else None,
        defects=[DefectPublic.model_validate(d) for d in (grade.defects if grade else [])],
        model_version=grade.model_version if grade else None,
        created_at=photo.created_at,
        deleted=photo.deleted_at is not None,
        image_url=f"/v1/photos/{photo.id}/image" if stored else None,
        annotated_url=f"/v1/photos/{photo.id}/annotated" if stored and grade else None,
    )


def item_grade_public(row: Inspection, photos: list[PhotoPublic] | None = None) -> ItemGradePublic:
    """An item-level grade."""
    return ItemGradePublic(
        grade=row.grade,
        confidence=row.confidence,
        probabilities=dict(row.probabilities),
        needs_review=row.needs_review,
        reason_codes=list(row.reason_codes),
        source=row.source,
        decided_by=row.decided_by,
        model_version=row.model_version,
        detector_version=row.detector_version,
        photos=[p.model_dump(mode="json") for p in photos or []],
    )


def decision_public(row: DecisionRecord) -> DecisionPublic:
    """A decision as callers see it (inputs stay in the evidence pack)."""
    return DecisionPublic(
        id=row.id,  # type: ignore[arg-type]
        outcome=row.outcome,
        stage=row.stage,
        reason_codes=list(row.reason_codes),
        messages=list(row.messages),
        fraud_score=row.fraud_score,
        fraud_signals=[FraudSignalPublic.model_validate(s) for s in row.fraud_signals],
        refund=RefundQuotePublic.model_validate(row.refund_quote) if row.refund_quote else None,
        policy_version=row.policy_version,
        model_version=row.model_version,
        decided_by=row.decided_by,
        created_at=row.created_at,
    )


def customer_decision(row: DecisionRecord) -> DecisionPublic:
    """A decision as its customer sees it: the outcome and eligibility reasons, no fraud scoring.

    Fraud evidence names other customers' returns and would teach a fraudster which signal
    fired, so customers get neither the score, the signals nor the review reasons.
    """
    full = decision_public(row)
    shown = [code for code in full.reason_codes if code in CUSTOMER_REASON_CODES]
    messages = full.messages if full.outcome == "ineligible" else []
    return full.model_copy(
        update={
            "reason_codes": shown,
            "messages": messages,
            "fraud_score": 0.0,
            "fraud_signals": [],
        }
    )


def refund_public(row: Refund) -> RefundPublic:
    """A refund as callers see it."""
    return RefundPublic(
        id=row.id,  # type: ignore[arg-type]
        amount_cents=row.amount_cents,
        currency=row.currency,
        status=row.status,
        idempotency_key=row.idempotency_key,
        adapter=row.adapter,
        adapter_reference=row.adapter_reference,
        last_error=row.last_error,
        created_at=row.created_at,
    )


def photos_public(*, session: Session, photos: list[Photo]) -> list[PhotoPublic]:
    """Photos with their per-photo grades."""
    ids = [p.id for p in photos if p.id is not None]
    grades: dict[int, Inspection] = {}
    if ids:
        for row in session.exec(
            select(Inspection).where(col(Inspection.photo_id).in_(ids), Inspection.scope == "photo")
        ).all():
            grades[row.photo_id] = row  # type: ignore[index]
    return [photo_public(photo=p, grade=grades.get(p.id)) for p in photos]  # type: ignore[arg-type]


def _allowed_actions(
    *, ret: Return, decision: DecisionRecord | None, refund: Refund | None
) -> list[str]:
    actions = list(ACTIONS.get(ret.status, ()))  # type: ignore[call-overload]
    paid = refund is not None and refund.status == "paid"
    instant = (
        ret.status in INSTANT_REFUND_STATUSES
        and decision is not None
        and decision.stage == "claim"
        and decision.outcome == "approve_refund"
    )
    if "refund" in actions and (paid or (ret.status == "approved" and not instant)):
        actions.remove("refund")
    if instant and not paid and "refund" not in actions:
        actions.append("refund")
    if ret.status == "inspected" and not paid:
        due = (decision.refund_quote or {}).get("amount_cents", 0) if decision else 0
        if due > 0 and "close" in actions:
            actions.remove("close")
        if decision is not None and decision.outcome == "needs_review":
            # the refund is held until QA or an admin decides
            actions = [a for a in actions if a != "refund"] + ["decide"]
        elif due == 0 and "refund" in actions:
            actions.remove("refund")
    return actions


def return_public(*, session: Session, ret: Return, for_customer: bool = False) -> ReturnPublic:
    """Everything about a return that staff may see; `for_customer` leaves out fraud scoring."""
    order = session.get(Order, ret.order_id)
    assert order is not None  # foreign key
    items = [
        ReturnItemPublic(
            id=ctx.item.id,  # type: ignore[arg-type]
            order_line_id=ctx.item.order_line_id,
            sku=ctx.line.sku,
            name=ctx.line.name,
            category=ctx.line.category,
            price_cents=ctx.line.price_cents,
            currency=ctx.line.currency,
            quantity=ctx.item.quantity,
            reason_code=ctx.item.reason_code,
            reason_text=ctx.item.reason_text,
        )
        for ctx in return_items(session=session, ret=ret)
    ]
    photos = photos_public(
        session=session,
        photos=facts.return_photos(
            session=session,
            return_id=ret.id,  # type: ignore[arg-type]
            with_embeddings=False,
        ),
    )
    sources = ("inspector", "station", "customer") if ret.status in AFTER_RECEIPT else ("customer",)
    grade_row = facts.latest_item_grade(session=session, return_id=ret.id, sources=sources)  # type: ignore[arg-type]
    decision = latest_decision(session=session, return_id=ret.id)  # type: ignore[arg-type]
    refund = latest_refund(session=session, return_id=ret.id)  # type: ignore[arg-type]
    label = session.exec(select(ShippingLabel).where(ShippingLabel.return_id == ret.id)).first()
    return ReturnPublic(
        id=ret.id,  # type: ignore[arg-type]
        rma=ret.rma or "",
        status=ret.status,
        order_number=order.order_number,
        customer_id=ret.customer_id,
        created_at=ret.created_at,
        updated_at=ret.updated_at,
        final_grade=ret.final_grade,
        items=items,
        photos=photos,
        item_grade=item_grade_public(grade_row) if grade_row else None,
        decision=(customer_decision(decision) if for_customer else decision_public(decision))
        if decision
        else None,
        refund=refund_public(refund) if refund else None,
        label=LabelPublic(
            carrier=label.carrier, tracking_number=label.tracking_number, label_url=label.label_url
        )
        if label
        else None,
        allowed_actions=_allowed_actions(ret=ret, decision=decision, refund=refund),
    )


def return_summary(*, ret: Return, order_number: str) -> ReturnSummary:
    """One row of the returns list."""
    return ReturnSummary(
        id=ret.id,  # type: ignore[arg-type]
        rma=ret.rma or "",
        status=ret.status,
        order_number=order_number,
        customer_id=ret.customer_id,
        created_at=ret.created_at,
        updated_at=ret.updated_at,
        final_grade=ret.final_grade,
    )
