"""Alembic migrations of the service's schema (run at start-up by inspection.store.db).

A schema change is a model change plus a new revision, generated against a database at head:

    INSPECTION_DATABASE_URL=sqlite:////tmp/schema.db .venv/bin/inspection init-db
    INSPECTION_DATABASE_URL=sqlite:////tmp/schema.db .venv/bin/alembic \
        -c inspection/store/migrations/alembic.ini revision --autogenerate -m "what changed"

tests/store/test_migrations.py fails while the models and the migrated schema differ.
"""
