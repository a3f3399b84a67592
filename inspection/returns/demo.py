"""Loads the demo customers and orders (datasets/demo/orders.json) for `init-db --demo`.

Dates in the file are days before the load, so the demo always sits where it should relative to
the return windows; loading twice skips orders that already exist.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session

from inspection.returns.orders import import_orders
from inspection.returns.schemas import OrderCreate
from inspection.store.models import utcnow

DEMO_FILE = Path(__file__).resolve().parents[2] / "datasets" / "demo" / "orders.json"


def demo_orders(*, path: Path = DEMO_FILE) -> list[OrderCreate]:
    """The demo orders with dates made absolute from today."""
    now = utcnow().replace(microsecond=0)
    raw: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))["orders"]
    orders = []
    for entry in raw:
        entry = dict(entry)
        customer = dict(entry["customer"])
        customer["created_at"] = now - timedelta(days=customer.pop("created_days_ago", 0))
        entry["customer"] = customer
        entry["ordered_at"] = now - timedelta(days=entry.pop("ordered_days_ago"))
        delivered = entry.pop("delivered_days_ago", None)
        entry["delivered_at"] = None if delivered is None else now - timedelta(days=delivered)
        orders.append(OrderCreate.model_validate(entry))
    return orders


def load_demo(*, engine: Engine, path: Path = DEMO_FILE) -> str:
    """Loads the demo orders (idempotent) and says what it did."""
    if not path.exists():
        return f"no demo data at {path}"
    with Session(engine) as session:
        result = import_orders(session=session, orders=demo_orders(path=path))
    return f"demo orders: {result.created} created, {result.skipped_existing} already present"
