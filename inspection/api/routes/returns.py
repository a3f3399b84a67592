"""Routes for returns: open, read, list, submit, decide, receive, inspect, quote, close."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status
from pydantic import AwareDatetime

from inspection.api.deps import PrincipalDep, SessionDep, StaffDep
from inspection.decisions.types import RefundQuote
from inspection.returns import public, service
from inspection.returns.deps import (
    AppSettingsDep,
    BlobsDep,
    OptionalPrincipalDep,
    PolicyDep,
    ReturnDep,
    require,
)
from inspection.returns.lifecycle import STATUSES, Status
from inspection.returns.schemas import (
    MAX_ID,
    DecisionOverride,
    InspectionInput,
    ReturnCreate,
    ReturnOpened,
    ReturnPublic,
    ReturnsPage,
)

router = APIRouter(tags=["returns"])


@router.post("/returns", status_code=status.HTTP_201_CREATED, response_model=ReturnOpened)
def open_return(
    body: ReturnCreate,
    session: SessionDep,
    settings: AppSettingsDep,
    principal: OptionalPrincipalDep,
) -> ReturnOpened:
    """Opens a return; the order number + e-mail authenticate the customer."""
    actor = principal.actor if principal and principal.role != "customer" else "customer"
    ret, token = service.open_return(
        session=session, body=body, actor=actor, token_secret=settings.security.token_secret
    )
    return ReturnOpened.model_validate(
        {
            "return": public.return_public(session=session, ret=ret, for_customer=True),
            "customer_token": token,
        }
    )


@router.get("/returns", response_model=ReturnsPage)
def list_returns(
    session: SessionDep,
    _: StaffDep,
    status: Annotated[Status | None, Query(description="one lifecycle status")] = None,
    rma: Annotated[str | None, Query(max_length=32)] = None,
    order_number: Annotated[str | None, Query(max_length=64)] = None,
    customer_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    created_from: Annotated[AwareDatetime | None, Query(description="ISO-8601 with zone")] = None,
    created_to: Annotated[AwareDatetime | None, Query(description="ISO-8601 with zone")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
) -> ReturnsPage:
    """Returns matching the filters, newest first (the station scans an RMA or order number)."""
    rows, total = service.list_returns(
        session=session,
        status=status,
        rma=rma,
        order_number=order_number,
        customer_id=customer_id,
        created_from=created_from,
        created_to=created_to,
        limit=limit,
        offset=offset,
    )
    return ReturnsPage(
        data=[public.return_summary(ret=ret, order_number=number) for ret, number in rows],
        count=total,
    )


@router.get("/returns/{return_id}", response_model=ReturnPublic)
def get_return(ret: ReturnDep, session: SessionDep, principal: PrincipalDep) -> ReturnPublic:
    """A return with its items, photos, grade, decision, refund and next actions."""
    return public.return_public(session=session, ret=ret, for_customer=principal.role == "customer")


@router.get(
    "/returns/{return_id}/label",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}},
)
def return_label(ret: ReturnDep, session: SessionDep) -> Response:
    """The printable return shipping label (PNG with Code 39 barcodes of tracking and RMA)."""
    return Response(
        content=service.label_png(session=session, ret=ret),
        media_type="image/png",
        headers={"Content-Disposition": f'inline; filename="{ret.rma}-label.png"'},
    )


@router.post("/returns/{return_id}/submit", response_model=ReturnPublic)
def submit(
    ret: ReturnDep, session: SessionDep, principal: PrincipalDep, policy: PolicyDep
) -> ReturnPublic:
    """Runs eligibility, fraud signals and the decision; approved returns get a label."""
    require(principal, "customer", "integration")
    ret = service.submit(session=session, ret=ret, policy=policy, actor=principal.actor)
    return public.return_public(session=session, ret=ret, for_customer=principal.role == "customer")


@router.post("/returns/{return_id}/decision", response_model=ReturnPublic)
def decide(
    body: DecisionOverride, ret: ReturnDep, session: SessionDep, principal: PrincipalDep
) -> ReturnPublic:
    """A person approves or rejects a return waiting in review (a claim, or a refund held at
    inspection: that one only QA or an admin may clear)."""
    require(principal, "qa", "station")
    ret = service.override_decision(
        session=session, ret=ret, body=body, actor=principal.actor, role=principal.role
    )
    return public.return_public(session=session, ret=ret)


@router.post("/returns/{return_id}/receive", response_model=ReturnPublic)
def receive(
    request: Request,
    ret: ReturnDep,
    session: SessionDep,
    principal: PrincipalDep,
    policy: PolicyDep,
    blobs: BlobsDep,
) -> ReturnPublic:
    """The station confirms the parcel arrived; unit comparison and fraud signals re-run."""
    require(principal, "station")
    ret = service.receive(
        session=session,
        ret=ret,
        policy=policy,
        actor=principal.actor,
        pipeline=getattr(request.app.state, "grading", None),
        blobs=blobs,
    )
    return public.return_public(session=session, ret=ret)


@router.post("/returns/{return_id}/inspection", response_model=ReturnPublic)
def inspect(
    body: InspectionInput,
    ret: ReturnDep,
    session: SessionDep,
    principal: PrincipalDep,
    policy: PolicyDep,
) -> ReturnPublic:
    """The inspector confirms the station grade or overrides it with a reason."""
    require(principal, "station")
    ret = service.inspect(session=session, ret=ret, policy=policy, body=body, actor=principal.actor)
    return public.return_public(session=session, ret=ret)


@router.get("/returns/{return_id}/refund-quote", response_model=RefundQuote)
def refund_quote(
    ret: ReturnDep, session: SessionDep, _: StaffDep, policy: PolicyDep
) -> RefundQuote:
    """The refund the policy allows for the current (or final) grade."""
    return service.refund_quote(session=session, ret=ret, policy=policy)


@router.post("/returns/{return_id}/close", response_model=ReturnPublic)
def close(ret: ReturnDep, session: SessionDep, principal: StaffDep) -> ReturnPublic:
    """Closes a refunded or rejected return."""
    ret = service.close(session=session, ret=ret, actor=principal.actor)
    return public.return_public(session=session, ret=ret)


__all__ = ["STATUSES", "router"]
