"""Routes for orders: create one, bulk import (CSV or JSON, all or nothing), read one."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, status

from inspection.api.deps import Principal, SessionDep, StaffDep, require_roles
from inspection.errors import InvalidInput, UnsupportedMediaType
from inspection.returns import orders as order_service
from inspection.returns.deps import PolicyDep
from inspection.returns.schemas import ImportResult, OrderCreate, OrderPublic, OrdersImport

router = APIRouter(tags=["orders"])
OrdersWriterDep = Annotated[Principal, require_roles("integration")]
# A CSV import above this is refused before parsing; split bigger files.
MAX_IMPORT_BYTES = 20 * 1024 * 1024


def _categories(policy: PolicyDep) -> set[str]:
    known = {name for name in policy.categories if name != "default"}
    return known | set(policy.non_returnable_categories) | set(order_service.BASE_CATEGORIES)


CategoriesDep = Annotated[set[str], Depends(_categories)]


@router.post("/orders", status_code=status.HTTP_201_CREATED, response_model=OrderPublic)
def create_order(
    body: OrderCreate, session: SessionDep, _: OrdersWriterDep, categories: CategoriesDep
) -> OrderPublic:
    """Creates an order with its lines (and its customer on first sight)."""
    order = order_service.create_order(session=session, order=body, categories=categories)
    return order_service.order_public(session=session, order=order)


async def _read_import(request: Request) -> list[OrderCreate]:
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        form = await request.form(max_part_size=MAX_IMPORT_BYTES)
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise InvalidInput("send the CSV as a multipart field named `file`")
        data = await upload.read(MAX_IMPORT_BYTES + 1)
        if len(data) > MAX_IMPORT_BYTES:
            raise InvalidInput(
                f"the CSV is larger than {MAX_IMPORT_BYTES // (1024 * 1024)} MB",
                hint="split it into smaller files",
            )
        return order_service.parse_orders_csv(data=data)
    if content_type.startswith("application/json"):
        from pydantic import ValidationError

        try:
            payload = OrdersImport.model_validate_json(await request.body())
        except ValidationError as exc:
            errors = []
            for err in exc.errors():
                loc = [str(p) for p in err["loc"]]
                row = (
                    int(loc[1]) + 1
                    if len(loc) > 1 and loc[0] == "orders" and loc[1].isdigit()
                    else 0
                )
                errors.append(
                    {"row": row, "field": ".".join(loc[2:]) or "body", "message": err["msg"]}
                )
            raise InvalidInput(
                f"{len(errors)} problem(s) in the import, first at row {errors[0]['row']} "
                f"({errors[0]['field']}: {errors[0]['message']}); nothing was imported",
                hint="fix the listed rows and send the whole import again",
                details={"errors": errors[:500]},
            ) from None
        return payload.orders
    raise UnsupportedMediaType(
        f"cannot import {content_type or 'a body without Content-Type'}",
        hint="send multipart/form-data with a CSV `file`, or JSON {orders: [...]}",
    )


@router.post("/orders/import", status_code=status.HTTP_201_CREATED, response_model=ImportResult)
async def import_orders(
    request: Request, _: OrdersWriterDep, categories: CategoriesDep
) -> ImportResult:
    """Imports orders from a CSV file or JSON; any bad row rejects the whole import."""
    from fastapi.concurrency import run_in_threadpool
    from sqlmodel import Session

    orders = await _read_import(request)

    def _store() -> ImportResult:
        with Session(request.app.state.engine) as session:
            return order_service.import_orders(
                session=session, orders=orders, categories=categories
            )

    # Parsing is cheap; the inserts block, so they run off the event loop.
    return await run_in_threadpool(_store)


@router.get("/orders/{order_number}", response_model=OrderPublic)
def get_order(order_number: str, session: SessionDep, _: StaffDep) -> OrderPublic:
    """An order with its customer and lines."""
    order = order_service.get_order(session=session, order_number=order_number)
    return order_service.order_public(session=session, order=order)
