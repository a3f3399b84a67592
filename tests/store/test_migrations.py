"""Migrations: `alembic upgrade head` builds exactly the schema the models declare, on SQLite
and PostgreSQL, and running it again changes nothing."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect
from sqlmodel import SQLModel

import inspection.store.models
import inspection.store.records  # noqa: F401 - E's tables are part of the schema
from inspection.store.db import run_migrations


def _diff(engine: Engine) -> list[object]:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, SQLModel.metadata))


def test_migrated_schema_matches_models(engine: Engine) -> None:
    assert _diff(engine) == []
    tables = set(inspect(engine).get_table_names())
    assert set(SQLModel.metadata.tables) <= tables
    assert "alembic_version" in tables


def test_migrations_are_idempotent(engine: Engine) -> None:
    run_migrations(engine=engine)
    assert _diff(engine) == []


def test_money_columns_are_integers(engine: Engine) -> None:
    columns = {
        (table, col["name"]): str(col["type"]).upper()
        for table in ("order_lines", "refunds")
        for col in inspect(engine).get_columns(table)
    }
    assert "INT" in columns[("order_lines", "price_cents")]
    assert "INT" in columns[("refunds", "amount_cents")]
    uniques = inspect(engine).get_unique_constraints("refunds")
    indexes = inspect(engine).get_indexes("refunds")
    assert any(u["column_names"] == ["idempotency_key"] for u in uniques) or any(
        i["unique"] and i["column_names"] == ["idempotency_key"] for i in indexes
    )
