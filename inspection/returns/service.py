"""Returns use cases: open, submit for a decision, decide a review, receive, inspect, close.

Each function validates everything first, then changes rows and writes audit and outbox events
in one transaction, so a rejected request leaves nothing half written.
"""

from __future__ import annotations

import json
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from inspection.decisions.policy import Policy
from inspection.decisions.types import (
    Decision,
    FraudAssessment,
    FraudInputs,
    GradeFacts,
    RefundQuote,
    Stage,
)
from inspection.errors import Conflict, Forbidden, InvalidInput, NotFound
from inspection.observability import DECISIONS, REVIEWS
from inspection.returns import facts
from inspection.returns.audit import record_event
from inspection.returns.lifecycle import begin_write, ensure_status, lock_return, transition
from inspection.returns.outbox import enqueue_event
from inspection.returns.schemas import (
    DecisionOverride,
    InspectionInput,
    ReturnCreate,
    refuse_nul,
)
from inspection.returns.tokens import issue_customer_token
from inspection.store.blobs import BlobStore
from inspection.store.models import (
    Customer,
    DecisionRecord,
    Inspection,
    Order,
    OrderLine,
    Refund,
    Return,
    ReturnItem,
    ShippingLabel,
    utcnow,
)

log = logging.getLogger(__name__)

# Worst first: a return's decision is its worst item's decision.
OUTCOME_SEVERITY = {"ineligible": 3, "needs_review": 2, "approve": 1, "approve_refund": 0}
OUTCOME_STATUS = {
    "approve": "approved",
    "approve_refund": "approved",
    "needs_review": "needs_review",
    "ineligible": "rejected",
}
# Statuses in which a return still claims its items (so they cannot be returned twice).
OPEN_CLAIM_EXCLUDED = ("rejected",)
# Stand-in carrier: a real carrier integration would book the label here; until then the
# service renders a printable label itself (GET /v1/returns/{id}/label).
LABEL_CARRIER = "demo-carrier"


@dataclass(frozen=True)
class ItemContext:
    """One returned item with its order line, as decisions need them."""

    item: ReturnItem
    line: OrderLine


def _return_value(items: list[ItemContext]) -> int:
    """What the whole return is worth, so value limits apply to it and not line by line."""
    return sum(ctx.line.price_cents * ctx.item.quantity for ctx in items)


def get_return(*, session: Session, return_id: int) -> Return:
    """The return with that id; NotFound otherwise."""
    ret = session.get(Return, return_id)
    if ret is None:
        raise NotFound(f"no return {return_id}", hint="check the return id or search by RMA")
    return ret


def return_items(*, session: Session, ret: Return) -> list[ItemContext]:
    """A return's items with their order lines, in the order they were claimed."""
    rows = session.exec(
        select(ReturnItem, OrderLine)
        .join(OrderLine, col(OrderLine.id) == ReturnItem.order_line_id)
        .where(ReturnItem.return_id == ret.id)
        .order_by(col(ReturnItem.id))
    ).all()
    return [ItemContext(item=item, line=line) for item, line in rows]


def open_return(
    *, session: Session, body: ReturnCreate, actor: str, token_secret: str
) -> tuple[Return, str]:
    """Opens a return for lines of an order; the order number + e-mail authenticate the customer."""
    # The returnable-quantity check and the insert must not interleave with another open.
    begin_write(session=session)
    order = session.exec(
        select(Order).where(Order.order_number == body.order_number).with_for_update()
    ).first()
    customer = session.get(Customer, order.customer_id) if order else None
    if (
        order is None
        or customer is None
        or not secrets.compare_digest(customer.email.lower(), body.email.strip().lower())
    ):
        # One message for both cases: the caller learns nothing about which part was wrong.
        raise NotFound(
            "no order matches that order number and e-mail",
            hint="use the order number and e-mail address from the order confirmation",
        )
    lines = {
        line.id: line
        for line in session.exec(select(OrderLine).where(OrderLine.order_id == order.id)).all()
    }
    problems: list[dict[str, Any]] = []
    seen: set[int] = set()
    for index, item in enumerate(body.items):
        line = lines.get(item.order_line_id)
        if line is None:
            problems.append(
                {"field": f"items.{index}.order_line_id", "message": "not a line of this order"}
            )
            continue
        if item.order_line_id in seen:
            problems.append(
                {"field": f"items.{index}.order_line_id", "message": "listed twice; merge them"}
            )
        seen.add(item.order_line_id)
        already = session.exec(
            select(func.coalesce(func.sum(ReturnItem.quantity), 0))
            .join(Return, col(Return.id) == ReturnItem.return_id)
            .where(
                ReturnItem.order_line_id == line.id,
                col(Return.status).not_in(OPEN_CLAIM_EXCLUDED),
            )
        ).one()
        if item.quantity + int(already) > line.quantity:
            problems.append(
                {
                    "field": f"items.{index}.quantity",
                    "message": f"only {line.quantity - int(already)} of {line.quantity} "
                    "can still be returned",
                }
            )
    if problems:
        raise InvalidInput(
            f"the return cannot be opened: {problems[0]['field']}: {problems[0]['message']}",
            hint="pick lines of this order that have not been returned yet",
            details={"fields": problems},
        )
    ret = Return(order_id=order.id, customer_id=customer.id)  # type: ignore[arg-type]
    session.add(ret)
    session.flush()
    ret.rma = f"RMA-{ret.id:06d}"
    session.add(ret)
    for item in body.items:
        session.add(
            ReturnItem(
                return_id=ret.id,  # type: ignore[arg-type]
                order_line_id=item.order_line_id,
                quantity=item.quantity,
                reason_code=item.reason_code,
                reason_text=item.reason_text,
            )
        )
    session.flush()
    after = {
        "status": ret.status,
        "rma": ret.rma,
        "order_number": order.order_number,
        "items": [i.model_dump() for i in body.items],
    }
    record_event(
        session=session,
        return_id=ret.id,
        actor=actor,
        action="return.opened",
        before=None,
        after=after,
    )
    enqueue_event(
        session=session,
        event_type="return.return_requested",
        payload={"return_id": ret.id, "rma": ret.rma, "status": ret.status, **after},
        return_id=ret.id,
    )
    session.commit()
    session.refresh(ret)
    token = issue_customer_token(return_id=ret.id, secret=token_secret)  # type: ignore[arg-type]
    return ret, token


def list_returns(
    *,
    session: Session,
    status: str | None = None,
    rma: str | None = None,
    order_number: str | None = None,
    customer_id: int | None = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[tuple[Return, str]], int]:
    """Returns matching the filters (newest first) with their order numbers, and the total."""
    for name, text in (("rma", rma), ("order_number", order_number)):
        if text:
            refuse_nul(text, field=name)
    query = select(Return, Order.order_number).join(Order, col(Order.id) == Return.order_id)
    if status:
        query = query.where(Return.status == status)
    if rma:
        query = query.where(Return.rma == rma.strip().upper())
    if order_number:
        query = query.where(Order.order_number == order_number.strip())
    if customer_id is not None:
        query = query.where(Return.customer_id == customer_id)
    if created_from is not None:
        query = query.where(Return.created_at >= created_from)
    if created_to is not None:
        query = query.where(Return.created_at < created_to)
    total = session.exec(select(func.count()).select_from(query.subquery())).one()
    rows = session.exec(
        query.order_by(col(Return.created_at).desc(), col(Return.id).desc())
        .offset(offset)
        .limit(limit)
    ).all()
    return [(ret, number) for ret, number in rows], int(total)


# --- decisions -------------------------------------------------------------------------------


def _assess(
    *,
    session: Session,
    policy: Policy,
    ret: Return,
    order: Order,
    ctx: ItemContext,
    grade: GradeFacts | None,
    sources: tuple[str, ...],
    unit_comparison: Any = None,
) -> tuple[Any, FraudAssessment, FraudInputs]:
    from inspection.decisions.anomaly import anomaly_score
    from inspection.decisions.eligibility import check_eligibility
    from inspection.decisions.fraud import assess_fraud
    from inspection.settings import get_settings

    now = utcnow()
    line = facts.line_facts(order=order, line=ctx.line)
    claim = facts.claim_facts(ret=ret, item=ctx.item, session=session)
    eligibility = check_eligibility(policy=policy, line=line, claim=claim)
    photos = [
        p
        for source in sources
        for p in facts.return_photos(
            session=session,
            return_id=ret.id,  # type: ignore[arg-type]
            source=source,
            item_id=ctx.item.id,
        )
    ]
    order_context = facts.order_context(session=session, order=order)
    history = facts.customer_history(session=session, ret=ret, now=now)
    # The anomaly model is a bundled artefact beside the ONNX models (models/anomaly/).
    anomaly = facts.anomaly_model(model_dir=get_settings().model.dir)
    inputs = FraudInputs(
        claim=claim,
        order=order_context,
        customer=history,
        photos=facts.photo_evidence(session=session, photos=photos),
        photo_matches=facts.photo_matches(
            session=session,
            ret=ret,
            photos=[p for p in photos if p.source == "customer"],
            min_similarity=policy.fraud.photo_reuse.min_embedding_similarity,
        ),
        item_grade=grade.grade if grade else None,
        item_grade_confidence=grade.confidence if grade else None,
        category=ctx.line.category,
        unit_comparison=unit_comparison,
        anomaly_score=anomaly_score(
            model=anomaly, customer=history, order=order_context, claim=claim
        ),
    )
    fraud = assess_fraud(policy=policy, inputs=inputs)
    return eligibility, fraud, inputs


def _decide_item(
    *,
    session: Session,
    policy: Policy,
    stage: Stage,
    ret: Return,
    order: Order,
    ctx: ItemContext,
    items: list[ItemContext],
    grade: GradeFacts | None,
    sources: tuple[str, ...],
    unit_comparison: Any = None,
) -> tuple[Decision, FraudAssessment]:
    """Eligibility, fraud signals and the decision for one item at one stage of the return."""
    from inspection.decisions.engine import decide

    eligibility, fraud, inputs = _assess(
        session=session,
        policy=policy,
        ret=ret,
        order=order,
        ctx=ctx,
        grade=grade,
        sources=sources,
        unit_comparison=unit_comparison,
    )
    decision = decide(
        policy=policy,
        stage=stage,
        line=facts.line_facts(order=order, line=ctx.line),
        eligibility=eligibility,
        fraud=fraud,
        grade=grade,
        claim=inputs.claim,
        customer=inputs.customer,
        # The whole return's value: a return split into cheap lines must not dodge the limits.
        return_value_cents=_return_value(items),
    )
    return decision, fraud


def _combine(decisions: list[Decision]) -> Decision:
    """One decision for a return from its items' decisions: the worst outcome wins."""
    if len(decisions) == 1:
        return decisions[0]
    worst = max(decisions, key=lambda d: OUTCOME_SEVERITY[d.outcome])
    reason_codes = list(dict.fromkeys(code for d in decisions for code in d.reason_codes))
    messages = [m for d in decisions for m in d.messages]
    quotes = [d.refund for d in decisions if d.refund is not None]
    refund = None
    if quotes and len(quotes) == len(decisions) and len({q.currency for q in quotes}) == 1:
        refund = RefundQuote(
            amount_cents=sum(q.amount_cents for q in quotes),
            currency=quotes[0].currency,
            gross_cents=sum(q.gross_cents for q in quotes),
            deductions=[d for q in quotes for d in q.deductions],
            grade=max(quotes, key=lambda q: ("resell", "refurbish", "reject").index(q.grade)).grade,
            policy_version=quotes[0].policy_version,
        )
    return Decision(
        outcome=worst.outcome,
        stage=worst.stage,
        reason_codes=reason_codes,
        messages=messages,
        fraud_score=max(d.fraud_score for d in decisions),
        refund=refund,
        policy_version=worst.policy_version,
        model_version=worst.model_version,
        inputs={"items": [d.inputs for d in decisions]},
    )


def _record_decision(
    *,
    session: Session,
    ret: Return,
    decision: Decision,
    fraud: list[FraudAssessment],
    decided_by: str,
    actor: str,
) -> DecisionRecord:
    signals = [s.model_dump(mode="json") for f in fraud for s in f.signals]
    row = DecisionRecord(
        return_id=ret.id,  # type: ignore[arg-type]
        outcome=decision.outcome,
        stage=decision.stage,
        reason_codes=list(decision.reason_codes),
        messages=list(decision.messages),
        fraud_score=float(decision.fraud_score),
        fraud_signals=signals,
        refund_quote=decision.refund.model_dump(mode="json") if decision.refund else None,
        policy_version=decision.policy_version,
        model_version=decision.model_version,
        decided_by=decided_by,
        inputs=_jsonable(decision.inputs),
    )
    session.add(row)
    session.flush()
    summary = {
        "decision_id": row.id,
        "outcome": row.outcome,
        "stage": row.stage,
        "reason_codes": row.reason_codes,
        "fraud_score": row.fraud_score,
        "refund_cents": decision.refund.amount_cents if decision.refund else None,
        "policy_version": row.policy_version,
        "decided_by": decided_by,
    }
    record_event(
        session=session,
        return_id=ret.id,
        actor=actor,
        action="decision.made",
        before=None,
        after=summary,
        model_version=decision.model_version,
    )
    enqueue_event(
        session=session,
        event_type="decision.made",
        payload={"return_id": ret.id, "rma": ret.rma, **summary},
        return_id=ret.id,
    )
    DECISIONS.labels(outcome=row.outcome).inc()
    return row


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def label_png(*, session: Session, ret: Return) -> bytes:
    """The printable return label; 404 until the return has one (it comes with approval)."""
    from inspection.returns.labels import render_label_png

    label = session.exec(select(ShippingLabel).where(ShippingLabel.return_id == ret.id)).first()
    if label is None:
        raise NotFound(
            f"return {ret.rma} has no shipping label yet",
            hint="a label is issued once the return is approved",
        )
    order = session.get(Order, ret.order_id)
    return render_label_png(
        rma=ret.rma or f"RMA-{ret.id:06d}",
        carrier=label.carrier,
        tracking_number=label.tracking_number,
        order_number=order.order_number if order else "",
        issued_on=label.created_at.date().isoformat(),
    )


def _issue_label(*, session: Session, ret: Return) -> ShippingLabel:
    tracking = f"RI{ret.id:08d}{secrets.token_hex(3).upper()}"
    label = ShippingLabel(
        return_id=ret.id,  # type: ignore[arg-type]
        carrier=LABEL_CARRIER,
        tracking_number=tracking,
        label_url=f"/v1/returns/{ret.id}/label",
    )
    session.add(label)
    session.flush()
    return label


def _approve(*, session: Session, ret: Return, actor: str, reason: str | None) -> None:
    transition(session=session, ret=ret, to="approved", actor=actor, reason=reason)
    label = _issue_label(session=session, ret=ret)
    transition(
        session=session,
        ret=ret,
        to="label_sent",
        actor="system",
        details={"carrier": label.carrier, "tracking_number": label.tracking_number},
    )


def submit(*, session: Session, ret: Return, policy: Policy, actor: str) -> Return:
    """Runs eligibility, fraud signals and the decision on the customer's photos."""

    lock_return(session=session, ret=ret)
    ensure_status(ret=ret, allowed=("return_requested",), action="submit")
    order = session.get(Order, ret.order_id)
    assert order is not None  # foreign key
    items = return_items(session=session, ret=ret)
    for ctx in items:
        required = policy.category(ctx.line.category).photos_required
        have = [
            p
            for p in facts.return_photos(
                session=session,
                return_id=ret.id,  # type: ignore[arg-type]
                source="customer",
                item_id=ctx.item.id,
            )
            if p.deleted_at is None
        ]
        if len(have) < required:
            raise InvalidInput(
                f"{ctx.line.category} returns need at least {required} customer photo(s) of "
                f"{ctx.line.name}; {len(have)} uploaded",
                hint="upload photos with POST /v1/returns/{id}/photos (source=customer), "
                "then submit again",
                code="photos_required",
                details={"return_item_id": ctx.item.id, "required": required, "have": len(have)},
            )
    transition(session=session, ret=ret, to="eligibility_check", actor=actor)
    decisions: list[Decision] = []
    assessments: list[FraudAssessment] = []
    for ctx in items:
        grade = facts.grade_facts(
            facts.latest_item_grade(
                session=session,
                return_id=ret.id,  # type: ignore[arg-type]
                sources=("customer",),
                item_id=ctx.item.id,
            )
        )
        decision, fraud = _decide_item(
            session=session,
            policy=policy,
            stage="claim",
            ret=ret,
            order=order,
            ctx=ctx,
            items=items,
            grade=grade,
            sources=("customer",),
        )
        assessments.append(fraud)
        decisions.append(decision)
    decision = _combine(decisions)
    _record_decision(
        session=session,
        ret=ret,
        decision=decision,
        fraud=assessments,
        decided_by="model",
        actor="system",
    )
    to = OUTCOME_STATUS[decision.outcome]
    if to == "approved":
        _approve(session=session, ret=ret, actor="system", reason=decision.outcome)
    else:
        if to == "needs_review":
            REVIEWS.inc()
        transition(
            session=session,
            ret=ret,
            to=to,  # type: ignore[arg-type]
            actor="system",
            reason=", ".join(decision.reason_codes[:5]) or None,
        )
    session.commit()
    session.refresh(ret)
    return ret


def latest_decision(*, session: Session, return_id: int) -> DecisionRecord | None:
    """The newest decision of a return."""
    return session.exec(
        select(DecisionRecord)
        .where(DecisionRecord.return_id == return_id)
        .order_by(col(DecisionRecord.id).desc())
    ).first()


def override_decision(
    *, session: Session, ret: Return, body: DecisionOverride, actor: str, role: str = "admin"
) -> Return:
    """A person decides a return the engine sent to review: a claim (status `needs_review`),
    or an inspection whose decision was `needs_review` (status `inspected`, refund on hold).

    The second kind is a fraud or value check on money about to move, so the station that
    inspected the item may not clear it: that takes QA or an admin.
    """
    lock_return(session=session, ret=ret)
    ensure_status(ret=ret, allowed=("needs_review", "inspected"), action="decide")
    previous = latest_decision(session=session, return_id=ret.id)  # type: ignore[arg-type]
    at_inspection = ret.status == "inspected"
    if at_inspection:
        if previous is None or previous.outcome != "needs_review":
            raise Conflict(
                "this return's inspection decision is not waiting for a reviewer",
                hint="release the refund or close the return instead",
                code="nothing_to_decide",
                details={"current_status": ret.status},
            )
        if role not in ("qa", "admin"):
            raise Forbidden(
                "a refund held for review is cleared by QA or an admin, not the station",
                hint="ask a QA reviewer to decide this return",
            )
    quote = (
        RefundQuote.model_validate(previous.refund_quote)
        if previous and previous.refund_quote
        else None
    )
    if at_inspection and body.outcome == "reject" and quote is not None:
        # Rejected after inspection: nothing is paid, and the return can be closed.
        quote = quote.model_copy(
            update={
                "amount_cents": 0,
                "deductions": [
                    *quote.deductions,
                    {"reason": "rejected on review", "amount_cents": quote.amount_cents},
                ],
            }
        )
    if at_inspection:
        outcome = "approve_refund" if body.outcome == "approve" else "ineligible"
    else:
        outcome = "approve" if body.outcome == "approve" else "ineligible"
    decision = Decision(
        outcome=outcome,  # type: ignore[arg-type]
        stage="inspection" if at_inspection else "claim",
        reason_codes=[f"manual_{body.outcome}"],
        messages=[body.reason],
        fraud_score=previous.fraud_score if previous else 0.0,
        refund=quote,
        policy_version=previous.policy_version if previous else "manual",
        model_version=previous.model_version if previous else None,
        inputs={"previous_decision_id": previous.id if previous else None, "reason": body.reason},
    )
    _record_decision(
        session=session,
        ret=ret,
        decision=decision,
        fraud=[],
        decided_by=actor,
        actor=actor,
    )
    if at_inspection:
        pass  # stays inspected: the station releases the refund (approve) or closes (reject)
    elif body.outcome == "approve":
        _approve(session=session, ret=ret, actor=actor, reason=body.reason)
    else:
        transition(session=session, ret=ret, to="rejected", actor=actor, reason=body.reason)
    session.commit()
    session.refresh(ret)
    return ret


def receive(
    *,
    session: Session,
    ret: Return,
    policy: Policy,
    actor: str,
    pipeline: Any = None,
    blobs: BlobStore | None = None,
) -> Return:
    """The station confirms the parcel arrived: compare units, re-run the fraud signals."""
    from inspection.returns.photos import compare_return_units

    lock_return(session=session, ret=ret)
    ensure_status(ret=ret, allowed=("label_sent",), action="receive")
    order = session.get(Order, ret.order_id)
    assert order is not None  # foreign key
    decisions: list[Decision] = []
    assessments: list[FraudAssessment] = []
    comparisons: list[dict[str, Any]] = []
    items = return_items(session=session, ret=ret)
    for ctx in items:
        station = facts.latest_item_grade(
            session=session,
            return_id=ret.id,  # type: ignore[arg-type]
            sources=("station",),
            item_id=ctx.item.id,
        )
        if station is None:
            continue  # nothing to compare yet: the inspection step will ask for photos
        comparison = (
            compare_return_units(
                session=session, ret=ret, item_id=ctx.item.id, pipeline=pipeline, blobs=blobs
            )
            if pipeline is not None and blobs is not None
            else None
        )
        if comparison is not None:
            comparisons.append(comparison.model_dump(mode="json"))
        grade = facts.grade_facts(station)
        decision, fraud = _decide_item(
            session=session,
            policy=policy,
            stage="inspection",
            ret=ret,
            order=order,
            ctx=ctx,
            items=items,
            grade=grade,
            sources=("customer", "station"),
            unit_comparison=comparison,
        )
        assessments.append(fraud)
        decisions.append(decision)
    if decisions:
        _record_decision(
            session=session,
            ret=ret,
            decision=_combine(decisions),
            fraud=assessments,
            decided_by="model",
            actor="system",
        )
    transition(
        session=session,
        ret=ret,
        to="item_received",
        actor=actor,
        details={"unit_comparisons": comparisons} if comparisons else None,
    )
    session.commit()
    session.refresh(ret)
    return ret


def inspect(
    *, session: Session, ret: Return, policy: Policy, body: InspectionInput, actor: str
) -> Return:
    """The inspector confirms or overrides the grade; the final decision carries the quote."""
    from inspection.decisions.refund_policy import quote_refund

    lock_return(session=session, ret=ret)
    ensure_status(ret=ret, allowed=("item_received",), action="inspect")
    order = session.get(Order, ret.order_id)
    assert order is not None  # foreign key
    items = return_items(session=session, ret=ret)
    station_grades = {
        ctx.item.id: facts.latest_item_grade(
            session=session,
            return_id=ret.id,  # type: ignore[arg-type]
            sources=("station",),
            item_id=ctx.item.id,
        )
        for ctx in items
    }
    if body.grade is None and any(g is None for g in station_grades.values()):
        raise InvalidInput(
            "there is no station grade to confirm",
            hint="upload station photos (source=station) first, or send {grade, reason}",
            code="station_photos_required",
        )
    decisions: list[Decision] = []
    assessments: list[FraudAssessment] = []
    final_grades: list[str] = []
    for ctx in items:
        station = station_grades[ctx.item.id]
        if body.grade is not None:
            grade = GradeFacts(
                grade=body.grade,
                confidence=1.0,
                reason_codes=["inspector_override"],
                model_version=station.model_version if station else None,
                decided_by="inspector",
            )
            row = Inspection(
                return_id=ret.id,  # type: ignore[arg-type]
                return_item_id=ctx.item.id,
                scope="item",
                source="inspector",
                grade=body.grade,
                confidence=1.0,
                probabilities=dict(station.probabilities) if station else {},
                defects=list(station.defects) if station else [],
                model_version=station.model_version if station else None,
                detector_version=station.detector_version if station else None,
                decided_by="inspector",
                reason=body.reason,
                reason_codes=["inspector_override"],
            )
        else:
            assert station is not None  # checked above
            model_grade = facts.grade_facts(station)
            assert model_grade is not None
            # A person looked at the unit and agreed: the grade is no longer the model's guess,
            # so its confidence must not send the return back to review (the model's own
            # confidence stays on the inspection row for QA).
            grade = model_grade.model_copy(
                update={
                    "decided_by": "inspector",
                    "confidence": 1.0,
                    "needs_review": False,
                    "reason_codes": [*model_grade.reason_codes, "inspector_confirmed"],
                }
            )
            row = Inspection(
                return_id=ret.id,  # type: ignore[arg-type]
                return_item_id=ctx.item.id,
                scope="item",
                source="inspector",
                grade=station.grade,
                confidence=station.confidence,
                probabilities=dict(station.probabilities),
                defects=list(station.defects),
                model_version=station.model_version,
                detector_version=station.detector_version,
                decided_by="model",
                reason="confirmed by inspector",
                reason_codes=list(station.reason_codes),
            )
        session.add(row)
        final_grades.append(grade.grade)
        decision, fraud = _decide_item(
            session=session,
            policy=policy,
            stage="inspection",
            ret=ret,
            order=order,
            ctx=ctx,
            items=items,
            grade=grade,
            sources=("customer", "station"),
        )
        assessments.append(fraud)
        line = facts.line_facts(order=order, line=ctx.line)
        if decision.refund is None:
            # The inspection step always carries a quote: it is what the refund will pay.
            quote = quote_refund(
                policy=policy,
                line=line,
                grade=grade.grade,
                quantity=ctx.item.quantity,
                reason_code=ctx.item.reason_code,  # type: ignore[arg-type]
            )
            decision = decision.model_copy(update={"refund": quote})
        decisions.append(decision)
    decision = _combine(decisions)
    _record_decision(
        session=session,
        ret=ret,
        decision=decision,
        fraud=assessments,
        decided_by=actor,
        actor=actor,
    )
    order_of_grades = ("resell", "refurbish", "reject")
    ret.final_grade = max(final_grades, key=order_of_grades.index)
    ret.final_grade_by = "inspector" if body.grade is not None else "model"
    transition(
        session=session,
        ret=ret,
        to="inspected",
        actor=actor,
        reason=body.reason,
        details={"final_grade": ret.final_grade, "overridden": body.grade is not None},
    )
    session.commit()
    session.refresh(ret)
    return ret


def refund_quote(*, session: Session, ret: Return, policy: Policy) -> RefundQuote:
    """The refund the policy allows now: from the final grade, else the latest item grade."""
    from inspection.decisions.refund_policy import quote_refund

    order = session.get(Order, ret.order_id)
    assert order is not None  # foreign key
    quotes: list[RefundQuote] = []
    for ctx in return_items(session=session, ret=ret):
        grade = ret.final_grade
        if grade is None:
            row = facts.latest_item_grade(
                session=session,
                return_id=ret.id,  # type: ignore[arg-type]
                sources=("inspector", "station", "customer"),
                item_id=ctx.item.id,
            )
            grade = row.grade if row else None
        if grade is None:
            raise Conflict(
                "no grade yet, so no refund can be quoted",
                hint="upload photos of the item first",
                code="no_grade",
            )
        quotes.append(
            quote_refund(
                policy=policy,
                line=facts.line_facts(order=order, line=ctx.line),
                grade=grade,  # type: ignore[arg-type]
                quantity=ctx.item.quantity,
                reason_code=ctx.item.reason_code,  # type: ignore[arg-type]
            )
        )
    if len(quotes) == 1:
        return quotes[0]
    return RefundQuote(
        amount_cents=sum(q.amount_cents for q in quotes),
        currency=quotes[0].currency,
        gross_cents=sum(q.gross_cents for q in quotes),
        deductions=[d for q in quotes for d in q.deductions],
        grade=max(quotes, key=lambda q: ("resell", "refurbish", "reject").index(q.grade)).grade,
        policy_version=quotes[0].policy_version,
    )


def close(*, session: Session, ret: Return, actor: str) -> Return:
    """Closes a finished return (refunded, rejected, or inspected with nothing left to pay)."""
    lock_return(session=session, ret=ret)
    ensure_status(ret=ret, allowed=("refunded", "rejected", "inspected"), action="close")
    if ret.status == "inspected":
        paid = session.exec(
            select(Refund).where(Refund.return_id == ret.id, Refund.status == "paid")
        ).first()
        decision = latest_decision(session=session, return_id=ret.id)  # type: ignore[arg-type]
        due = (decision.refund_quote or {}).get("amount_cents", 0) if decision else 0
        if paid is None and due > 0:
            raise Conflict(
                f"a refund of {due} cents is still due on this return",
                hint="release the refund (POST /v1/returns/{id}/refund) before closing",
                code="refund_due",
                details={"current_status": ret.status},
            )
    transition(session=session, ret=ret, to="closed", actor=actor)
    session.commit()
    session.refresh(ret)
    return ret
