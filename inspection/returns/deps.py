"""Request dependencies of the returns routers: the app's settings, policy and blob store, and
`valid_return` (404 for an unknown id, 403 for another customer's return).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Path, Request
from sqlalchemy import Engine

from inspection.api.deps import (
    Principal,
    PrincipalDep,
    Role,
    SessionDep,
    SettingsDep,
    get_principal,
    settings_dep,
)
from inspection.decisions.policy import Policy, load_policy
from inspection.errors import Forbidden
from inspection.returns.schemas import MAX_ID
from inspection.returns.service import get_return
from inspection.store.blobs import BlobStore
from inspection.store.models import Return

# The settings the app was built with (tests pass their own): the same dependency as the
# principal's, so FastAPI resolves it once per request.
AppSettingsDep = SettingsDep


async def app_engine(request: Request) -> Engine:
    """The engine built at start-up."""
    return request.app.state.engine


EngineDep = Annotated[Engine, Depends(app_engine)]


def current_policy(settings: AppSettingsDep) -> Policy:
    """The returns policy (reloaded when the file changes)."""
    return load_policy(settings.policy.path)


PolicyDep = Annotated[Policy, Depends(current_policy)]


async def blob_store(request: Request, settings: AppSettingsDep) -> BlobStore:
    """The photo blob store, created once per app."""
    store = getattr(request.app.state, "blobs", None)
    if store is None:
        store = BlobStore(settings.storage.blob_dir)
        request.app.state.blobs = store
    return store


BlobsDep = Annotated[BlobStore, Depends(blob_store)]


async def optional_principal(
    request: Request,
    x_api_key: Annotated[str | None, Header()] = None,
    authorization: Annotated[str | None, Header()] = None,
) -> Principal | None:
    """The caller if they sent credentials (checked), None for an anonymous customer."""
    if not x_api_key and not authorization:
        return None
    return await get_principal(request, await settings_dep(request), x_api_key, authorization)


OptionalPrincipalDep = Annotated[Principal | None, Depends(optional_principal)]


def ensure_can_see(*, principal: Principal, ret: Return) -> None:
    """Customers see only their own return; staff see all."""
    if principal.role == "customer" and principal.return_id != ret.id:
        raise Forbidden(
            "this customer token is for another return",
            hint="use the token you received when you opened this return",
        )


def valid_return(
    session: SessionDep,
    principal: PrincipalDep,
    return_id: Annotated[int, Path(ge=1, le=MAX_ID)],
) -> Return:
    """The return in the path, visible to the caller; 404 / 403 otherwise."""
    ret = get_return(session=session, return_id=return_id)
    ensure_can_see(principal=principal, ret=ret)
    return ret


ReturnDep = Annotated[Return, Depends(valid_return)]


def require(principal: Principal, *roles: Role) -> None:
    """Admits only the given roles (admin always); Forbidden otherwise."""
    if principal.role != "admin" and principal.role not in roles:
        raise Forbidden(
            f"the {principal.role} role may not do this",
            hint=f"this needs one of the roles: {', '.join(roles)}",
        )
