"""Alembic migrations of the service's schema (run at start-up by inspection.store.db)."""
