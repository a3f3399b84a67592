"""The database engine (SQLite file or PostgreSQL), Alembic migrations at start-up, and
`init-db` with the idempotent demo load.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url

from inspection.settings import Settings

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Writers wait this long for SQLite's single write lock before giving up; refunds under
# concurrent double-clicks queue behind each other well within it.
SQLITE_BUSY_TIMEOUT_MS = 30_000
# Execution option that makes the next SQLite transaction take the write lock at BEGIN.
SQLITE_BEGIN_OPTION = "sqlite_begin"


def _sqlite_setup(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let us emit BEGIN ourselves (pysqlite's implicit BEGIN cannot be IMMEDIATE).
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        mode = conn.get_execution_options().get(SQLITE_BEGIN_OPTION, "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")


def create_db_engine(*, url: str, echo: bool = False) -> Engine:
    """Builds an engine for a SQLite file or PostgreSQL URL, without migrating."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            echo=echo,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        )
        _sqlite_setup(engine)
        return engine
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        # Plain postgresql:// means psycopg 3 here; psycopg2 is not installed.
        url = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return create_engine(url, echo=echo, pool_pre_ping=True, pool_size=10, max_overflow=20)


def alembic_config() -> Config:
    """The Alembic configuration shipped inside the package."""
    cfg = Config(str(MIGRATIONS_DIR / "alembic.ini"))
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def run_migrations(*, engine: Engine, revision: str = "head") -> None:
    """Upgrades the schema to `revision` (Alembic), on the given engine."""
    cfg = alembic_config()
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)


def init_engine(*, settings: Settings) -> Engine:
    """The service's engine, migrated to the latest schema."""
    engine = create_db_engine(url=settings.database.url, echo=settings.database.echo)
    run_migrations(engine=engine)
    log.info("database ready", extra={"ctx_backend": engine.dialect.name})
    return engine


def ping(*, engine: Engine) -> bool:
    """Whether the database answers a trivial query."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return True
    except Exception:
        log.warning("database ping failed", exc_info=True)
        return False


def table_names(*, engine: Engine) -> list[str]:
    """Tables present in the database (used by tests and diagnostics)."""
    return sorted(inspect(engine).get_table_names())


def init_database(*, settings: Settings, demo: bool) -> str:
    """Creates or migrates the database; with `demo`, loads the demo data. Returns a summary."""
    from inspection.returns.demo import load_demo

    engine = init_engine(settings=settings)
    try:
        summary = f"database ready at {make_url(settings.database.url).render_as_string()}"
        if demo:
            summary += "; " + load_demo(engine=engine)
        return summary
    finally:
        engine.dispose()
