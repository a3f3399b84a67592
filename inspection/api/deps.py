"""Request dependencies, declared once as `Annotated` aliases for the routers.

The dependencies that do no I/O are `async def`: FastAPI runs a plain `def` dependency on the
thread pool, and those hops cost more than the work they wrapped (live server, uploads at
concurrency 4: 93-95 ms of server CPU a photo with them, 90 ms without). Anything that queries
the database stays `def` or hands the query to the thread pool.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import Depends, Header, Request
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from inspection.errors import Forbidden, Unauthorized
from inspection.settings import Settings, get_settings

Role = Literal["station", "qa", "admin", "integration", "customer"]
STAFF_ROLES: tuple[Role, ...] = ("station", "qa", "admin", "integration")


@dataclass(frozen=True)
class Principal:
    """Who is calling: a staff role with an API key, or a customer scoped to one return."""

    role: Role
    return_id: int | None = None  # set only for customers

    @property
    def actor(self) -> str:
        """The name written to the audit log."""
        return f"customer:return-{self.return_id}" if self.role == "customer" else self.role


async def settings_dep(request: Request) -> Settings:
    """The settings the app was built with (tests and embedders pass their own)."""
    settings = getattr(request.app.state, "settings", None)
    return settings if isinstance(settings, Settings) else get_settings()


SettingsDep = Annotated[Settings, Depends(settings_dep)]


async def get_db(request: Request) -> AsyncIterator[Session]:
    """One database session per request, from the engine built at start-up.

    Opening a session does no I/O (the connection is taken at its first query, on the route's
    worker thread); closing it returns the connection to the pool.
    """
    with Session(request.app.state.engine) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_db)]


def _role_for_key(settings: Settings, key: str) -> Role | None:
    sec = settings.security
    for role, expected in (
        ("station", sec.station_key),
        ("qa", sec.qa_key),
        ("admin", sec.admin_key),
        ("integration", sec.integration_key),
    ):
        # Constant-time comparison: key checks must not leak how much of a key matched.
        if hmac.compare_digest(key.encode(), expected.encode()):
            return role  # type: ignore[return-value]
    return None


async def get_principal(
    request: Request,
    settings: SettingsDep,
    x_api_key: Annotated[str | None, Header()] = None,
    authorization: Annotated[str | None, Header()] = None,
) -> Principal:
    """Authenticates a staff API key (`X-API-Key`) or a customer token (`Bearer ...`)."""
    if x_api_key:
        role = _role_for_key(settings, x_api_key)
        if role is None:
            lookup = getattr(request.app.state, "api_key_lookup", None)
            # Keys created with `inspection create-api-key` live in the database.
            role = await run_in_threadpool(lookup, x_api_key) if lookup else None
        if role is None:
            raise Unauthorized("the API key is not valid", hint="send a valid key in X-API-Key")
        return Principal(role=role)
    if authorization and authorization.lower().startswith("bearer "):
        from inspection.returns.tokens import verify_customer_token

        return_id = verify_customer_token(
            token=authorization[7:].strip(), secret=settings.security.token_secret
        )
        return Principal(role="customer", return_id=return_id)
    raise Unauthorized(
        "authentication required",
        hint="send a staff API key in X-API-Key or a customer token as 'Authorization: Bearer'",
    )


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def require_roles(*roles: Role) -> Any:
    """Builds a dependency that admits only the given roles (admin is always admitted)."""

    async def _check(principal: PrincipalDep) -> Principal:
        if principal.role != "admin" and principal.role not in roles:
            raise Forbidden(
                f"the {principal.role} role may not do this",
                hint=f"use a key with one of the roles: {', '.join(roles)}",
            )
        return principal

    return Depends(_check)


StaffDep = Annotated[Principal, require_roles(*STAFF_ROLES)]
StationDep = Annotated[Principal, require_roles("station")]
QaDep = Annotated[Principal, require_roles("qa")]
AdminDep = Annotated[Principal, require_roles("admin")]
IntegrationDep = Annotated[Principal, require_roles("integration", "station")]
