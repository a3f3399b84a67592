"""Orders and customers: create one order, bulk-import many (CSV or JSON, all or nothing),
and read them back as `OrderPublic`.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import Any

from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from inspection.errors import Conflict, InvalidInput, NotFound
from inspection.returns.lifecycle import begin_write
from inspection.returns.schemas import (
    CustomerPublic,
    ImportResult,
    OrderCreate,
    OrderLinePublic,
    OrderPublic,
    refuse_nul,
)
from inspection.store.models import Customer, Order, OrderLine

# Categories every policy knows; a policy file may add more (see `known_categories`).
BASE_CATEGORIES = frozenset({"electronics", "apparel", "shoes", "boxed", "hard_goods"})
# Columns of the CSV import; one row per order line, order fields repeated on each row.
CSV_ORDER_FIELDS = (
    "order_number",
    "ordered_at",
    "delivered_at",
    "currency",
    "shipping_country",
    "billing_country",
    "expedited_shipping",
)
CSV_CUSTOMER_FIELDS = {
    "customer_external_id": "external_id",
    "customer_email": "email",
    "customer_name": "name",
    "customer_created_at": "created_at",
}
CSV_LINE_FIELDS = ("sku", "name", "category", "price_cents", "quantity", "final_sale")
CSV_REQUIRED = ("order_number", "customer_external_id", "customer_email", "ordered_at", "currency")
# Upper bound on one import so a single request cannot hold the write lock for minutes.
MAX_IMPORT_ROWS = 50_000


def _check_categories(*, order: OrderCreate, categories: Iterable[str]) -> list[dict[str, Any]]:
    known = set(categories)
    return [
        {
            "field": f"lines.{i}.category",
            "message": f"unknown category {line.category!r}; use one of {', '.join(sorted(known))}",
        }
        for i, line in enumerate(order.lines)
        if line.category not in known
    ]


def _insert_order(*, session: Session, order: OrderCreate) -> Order:
    customer = session.exec(
        select(Customer).where(Customer.external_id == order.customer.external_id)
    ).first()
    if customer is None:
        customer = Customer(
            external_id=order.customer.external_id,
            email=order.customer.email.strip().lower(),
            name=order.customer.name,
        )
        if order.customer.created_at is not None:
            customer.created_at = order.customer.created_at
        session.add(customer)
        session.flush()
    row = Order(
        order_number=order.order_number,
        customer_id=customer.id,  # type: ignore[arg-type]
        currency=order.currency,
        ordered_at=order.ordered_at,
        delivered_at=order.delivered_at,
        shipping_country=order.shipping_country,
        billing_country=order.billing_country,
        expedited_shipping=order.expedited_shipping,
    )
    session.add(row)
    session.flush()
    for line in order.lines:
        session.add(
            OrderLine(
                order_id=row.id,  # type: ignore[arg-type]
                sku=line.sku,
                name=line.name,
                category=line.category,
                price_cents=line.price_cents,
                currency=order.currency,
                quantity=line.quantity,
                final_sale=line.final_sale,
            )
        )
    session.flush()
    return row


def create_order(
    *, session: Session, order: OrderCreate, categories: Iterable[str] = BASE_CATEGORIES
) -> Order:
    """Creates an order (and its customer on first sight); Conflict if the number exists."""
    problems = _check_categories(order=order, categories=categories)
    if problems:
        raise InvalidInput(
            problems[0]["message"], hint="fix the listed fields", details={"fields": problems}
        )
    begin_write(session=session)
    if session.exec(select(Order.id).where(Order.order_number == order.order_number)).first():
        raise Conflict(
            f"order {order.order_number} already exists",
            hint="orders are immutable here; use a new order number",
        )
    try:
        row = _insert_order(session=session, order=order)
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise Conflict(
            f"order {order.order_number} already exists", hint="use a new order number"
        ) from exc
    session.refresh(row)
    return row


def import_orders(
    *, session: Session, orders: list[OrderCreate], categories: Iterable[str] = BASE_CATEGORIES
) -> ImportResult:
    """Imports many orders in one transaction; existing order numbers are skipped."""
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()
    for index, order in enumerate(orders):
        for problem in _check_categories(order=order, categories=categories):
            errors.append({"row": index + 1, **problem})
        if order.order_number in seen:
            errors.append(
                {"row": index + 1, "field": "order_number", "message": "repeated in this import"}
            )
        seen.add(order.order_number)
    if errors:
        raise _import_error(errors)
    begin_write(session=session)
    existing = set(session.exec(select(Order.order_number).where(Order.order_number.in_(seen))))  # type: ignore[attr-defined]
    created = 0
    try:
        for order in orders:
            if order.order_number in existing:
                continue
            _insert_order(session=session, order=order)
            created += 1
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise Conflict(
            "another import created some of these orders at the same time",
            hint="send the import again; existing orders will be skipped",
        ) from exc
    return ImportResult(created=created, skipped_existing=len(orders) - created)


def _import_error(errors: list[dict[str, Any]]) -> InvalidInput:
    first = errors[0]
    return InvalidInput(
        f"{len(errors)} problem(s) in the import, first at row {first['row']} "
        f"({first['field']}: {first['message']}); nothing was imported",
        hint="fix the listed rows and send the whole file again",
        details={"errors": errors[:500]},
    )


def _blank_to_none(value: str | None) -> str | None:
    return None if value is None or value.strip() == "" else value.strip()


def _csv_bool(value: str | None) -> bool | str:
    if value is None or value.strip() == "":
        return False
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes", "y"):
        return True
    if lowered in ("false", "0", "no", "n"):
        return False
    return value  # left as text so validation reports it


def _csv_int(value: str | None, default: int | None = None) -> int | str | None:
    if value is None or value.strip() == "":
        return default
    try:
        return int(value.strip())
    except ValueError:
        return value  # left as text so validation reports it


def parse_orders_csv(*, data: bytes) -> list[OrderCreate]:
    """Parses a one-row-per-line CSV into orders; InvalidInput lists every bad row and field."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            "the CSV file is not UTF-8 text", hint="export the file as UTF-8 CSV"
        ) from exc
    reader = csv.DictReader(io.StringIO(text))
    header = set(reader.fieldnames or [])
    missing = [
        c for c in (*CSV_REQUIRED, "sku", "name", "category", "price_cents") if c not in header
    ]
    if missing:
        raise InvalidInput(
            f"the CSV is missing columns: {', '.join(missing)}",
            hint="the first line must name the columns (see docs/api.md)",
            details={
                "errors": [{"row": 0, "field": c, "message": "missing column"} for c in missing]
            },
        )
    grouped: dict[str, dict[str, Any]] = {}
    rows_of: dict[str, list[int]] = {}
    errors: list[dict[str, Any]] = []
    for row_number, raw in enumerate(reader, start=1):
        if row_number > MAX_IMPORT_ROWS:
            raise InvalidInput(
                f"the CSV has more than {MAX_IMPORT_ROWS} rows", hint="split it into smaller files"
            )
        number = (raw.get("order_number") or "").strip()
        order = grouped.get(number)
        if order is None:
            order = {
                "order_number": number,
                "customer": {
                    key: _blank_to_none(raw.get(column))
                    for column, key in CSV_CUSTOMER_FIELDS.items()
                    if _blank_to_none(raw.get(column)) is not None
                },
                "ordered_at": _blank_to_none(raw.get("ordered_at")),
                "delivered_at": _blank_to_none(raw.get("delivered_at")),
                "currency": _blank_to_none(raw.get("currency")),
                "shipping_country": _blank_to_none(raw.get("shipping_country")),
                "billing_country": _blank_to_none(raw.get("billing_country")),
                "expedited_shipping": _csv_bool(raw.get("expedited_shipping")),
                "lines": [],
            }
            grouped[number] = order
            rows_of[number] = []
        rows_of[number].append(row_number)
        order["lines"].append(
            {
                "sku": _blank_to_none(raw.get("sku")),
                "name": _blank_to_none(raw.get("name")),
                "category": _blank_to_none(raw.get("category")),
                "price_cents": _csv_int(raw.get("price_cents")),
                "quantity": _csv_int(raw.get("quantity"), default=1),
                "final_sale": _csv_bool(raw.get("final_sale")),
            }
        )
    if not grouped:
        raise InvalidInput("the CSV has no rows", hint="add one row per order line")
    orders: list[OrderCreate] = []
    for number, payload in grouped.items():
        try:
            orders.append(OrderCreate.model_validate(payload))
        except ValidationError as exc:
            for err in exc.errors():
                loc = [str(p) for p in err["loc"]]
                row = rows_of[number][0]
                if len(loc) >= 2 and loc[0] == "lines" and loc[1].isdigit():
                    row = rows_of[number][int(loc[1])]
                    field = ".".join(loc[2:]) or "line"
                elif loc and loc[0] == "customer":
                    field = "customer_" + ".".join(loc[1:]) if len(loc) > 1 else "customer"
                else:
                    field = ".".join(loc) or "row"
                errors.append({"row": row, "field": field, "message": err["msg"]})
    if errors:
        raise _import_error(sorted(errors, key=lambda e: e["row"]))
    return orders


def get_order(*, session: Session, order_number: str) -> Order:
    """The order with that number; NotFound otherwise."""
    refuse_nul(order_number, field="order_number")
    order = session.exec(select(Order).where(Order.order_number == order_number)).first()
    if order is None:
        raise NotFound(f"no order {order_number}", hint="check the order number")
    return order


def order_public(*, session: Session, order: Order) -> OrderPublic:
    """The public view of an order with its customer and lines."""
    customer = session.get(Customer, order.customer_id)
    assert customer is not None  # foreign key
    lines = session.exec(
        select(OrderLine).where(OrderLine.order_id == order.id).order_by(OrderLine.id)  # type: ignore[arg-type]
    ).all()
    return OrderPublic(
        id=order.id,  # type: ignore[arg-type]
        order_number=order.order_number,
        customer=CustomerPublic.model_validate(customer, from_attributes=True),
        ordered_at=order.ordered_at,
        delivered_at=order.delivered_at,
        currency=order.currency,
        shipping_country=order.shipping_country,
        billing_country=order.billing_country,
        expedited_shipping=order.expedited_shipping,
        lines=[OrderLinePublic.model_validate(line, from_attributes=True) for line in lines],
    )
