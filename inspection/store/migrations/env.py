"""Alembic environment: migrates the connection inspection.store.db hands over, or a URL
from INSPECTION_DATABASE_URL when run as `alembic -c inspection/store/migrations/alembic.ini`.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection
from sqlmodel import SQLModel

import inspection.store.models
import inspection.store.records  # noqa: F401
from inspection.settings import DatabaseSettings

target_metadata = SQLModel.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things: batch mode rebuilds tables instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    from inspection.store.db import create_db_engine

    engine = create_db_engine(url=DatabaseSettings().url)
    with engine.begin() as conn:
        _run(conn)
    engine.dispose()
