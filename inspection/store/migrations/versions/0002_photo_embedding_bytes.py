"""photo embeddings as float32 bytes instead of JSON text

The photo-reuse search reads every stored customer photo's embedding on each decision; as JSON
that cost 0.45 ms a stored photo (9 s a decision at 20,000 photos). Existing embeddings are
converted in place, in pages, so a large table never sits in memory at once.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 10:40:00
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

import inspection.store.models
from inspection.store.models import vector_bytes, vector_from_bytes

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PAGE = 500


def _copy(source: sa.ColumnClause[Any], target: sa.ColumnClause[Any], convert: Callable) -> None:
    """Fills `target` from `source` for every photo, PAGE rows at a time, in id order."""
    bind = op.get_bind()
    photos = sa.table("photos", sa.column("id", sa.Integer), source, target)
    last = 0
    while True:
        rows = bind.execute(
            sa.select(photos.c.id, source)
            .where(photos.c.id > last, source.is_not(None))
            .order_by(photos.c.id)
            .limit(PAGE)
        ).all()
        if not rows:
            return
        bind.execute(
            photos.update().where(photos.c.id == sa.bindparam("photo_id")),
            [{"photo_id": row[0], target.name: convert(row[1])} for row in rows],
        )
        last = rows[-1][0]


def _from_json(value: Any) -> bytes:
    # PostgreSQL's driver hands JSON back decoded; SQLite's as text.
    return vector_bytes(json.loads(value) if isinstance(value, str) else value)


def upgrade() -> None:
    with op.batch_alter_table("photos") as batch:
        batch.add_column(
            sa.Column("embedding_f32", inspection.store.models.Float32Vector(), nullable=True)
        )
    _copy(sa.column("embedding", sa.JSON), sa.column("embedding_f32", sa.LargeBinary), _from_json)
    with op.batch_alter_table("photos") as batch:
        batch.drop_column("embedding")
        batch.alter_column("embedding_f32", new_column_name="embedding")


def downgrade() -> None:
    with op.batch_alter_table("photos") as batch:
        batch.add_column(sa.Column("embedding_json", sa.JSON(), nullable=True))
    _copy(
        sa.column("embedding", sa.LargeBinary),
        sa.column("embedding_json", sa.JSON),
        lambda data: vector_from_bytes(data).tolist(),
    )
    with op.batch_alter_table("photos") as batch:
        batch.drop_column("embedding")
        batch.alter_column("embedding_json", new_column_name="embedding")
