"""Routes for refunds: release a return's refund once, whatever the retries."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Path, Response, status

from inspection.api.deps import PrincipalDep
from inspection.returns import public
from inspection.returns.deps import AppSettingsDep, EngineDep, PolicyDep, require
from inspection.returns.refunds import adapter_from_settings, release_refund
from inspection.returns.schemas import MAX_ID, RefundPublic

router = APIRouter(tags=["refunds"])


@router.post(
    "/returns/{return_id}/refund",
    status_code=status.HTTP_201_CREATED,
    response_model=RefundPublic,
    responses={200: {"description": "the same refund, already released by an earlier request"}},
)
def release(
    return_id: Annotated[int, Path(ge=1, le=MAX_ID)],
    response: Response,
    engine: EngineDep,
    principal: PrincipalDep,
    settings: AppSettingsDep,
    policy: PolicyDep,
    idempotency_key: Annotated[str | None, Header(max_length=128)] = None,
) -> RefundPublic:
    """Releases the refund: 201 the first time, 200 with the same refund on any retry."""
    require(principal, "station", "integration")
    outcome = release_refund(
        engine=engine,
        return_id=return_id,
        idempotency_key=idempotency_key,
        policy=policy,
        adapter=adapter_from_settings(settings.refund),
        actor=principal.actor,
    )
    if not outcome.created:
        response.status_code = status.HTTP_200_OK
    return public.refund_public(outcome.refund)
