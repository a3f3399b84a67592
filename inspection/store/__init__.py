"""Persistence: SQLModel tables, the engine with its migrations, and the photo blob store."""
