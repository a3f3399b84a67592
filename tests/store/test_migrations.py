"""Migrations: `alembic upgrade head` builds exactly the schema the models declare, on SQLite
and PostgreSQL, and running it again changes nothing."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, text
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


def test_photo_embeddings_survive_the_move_from_json_to_bytes(database_url: str) -> None:
    import json

    from alembic import command
    from sqlmodel import Session, select

    from inspection.store.db import alembic_config, create_db_engine
    from inspection.store.models import Photo
    from tests.returns.test_qa import Seeder

    engine = create_db_engine(url=database_url)
    try:
        run_migrations(engine=engine)
        return_id, item_id = Seeder(engine).return_()
        # float32 values: the bytes keep them exactly, as the model's outputs are float32.
        embedding = [0.5, -1.25, 3.0, 2**-20, -0.0078125]
        with Session(engine) as session:
            for vector in (embedding, None):
                session.add(
                    Photo(
                        return_id=return_id,
                        return_item_id=item_id,
                        source="customer",
                        sha256="a" * 64,
                        phash="0" * 16,
                        content_type="image/jpeg",
                        byte_size=1,
                        width=1,
                        height=1,
                        embedding=vector,
                    )
                )
            session.commit()

        cfg = alembic_config()
        with engine.begin() as connection:
            cfg.attributes["connection"] = connection
            command.downgrade(cfg, "0001")
        with engine.connect() as conn:
            stored = [
                row[0] for row in conn.execute(text("SELECT embedding FROM photos ORDER BY id"))
            ]
        as_json = [json.loads(v) if isinstance(v, str) else v for v in stored]
        assert as_json == [pytest.approx(embedding, rel=1e-6), None]

        run_migrations(engine=engine)
        with Session(engine) as session:
            photos = session.exec(select(Photo).order_by(Photo.id)).all()  # type: ignore[arg-type]
        assert [p.embedding for p in photos] == [embedding, None]
        assert _diff(engine) == []
    finally:
        engine.dispose()
