"""Async SQLAlchemy access to a service's own database, and its migrations (Alembic).

SQLite (a file, the default) and PostgreSQL (by URL) behave the same to callers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

MIGRATIONS = Path(__file__).parent / "migrations"


def create_engine(url: str) -> AsyncEngine:
    """An engine for ``url``; SQLite gets WAL and real transactions (BEGIN IMMEDIATE)."""
    parsed = make_url(url)
    if not parsed.get_backend_name().startswith("sqlite"):
        return create_async_engine(url, pool_size=5, max_overflow=5)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url)
    _make_sqlite_transactional(engine)
    return engine


def _make_sqlite_transactional(engine: AsyncEngine) -> None:
    # pysqlite's own BEGIN handling breaks SAVEPOINT and lets a read-then-write
    # transaction fail on lock upgrade; take the write lock up front instead.
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


async def migrate(engine: AsyncEngine, service_migrations: Path) -> None:
    """Bring the database to the newest schema: the shared messaging tables and the service's own."""

    def upgrade(connection: Connection) -> None:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.set_main_option("version_locations", f"{MIGRATIONS / 'versions'} {service_migrations}")
        config.set_main_option("path_separator", "space")
        config.attributes["connection"] = connection
        command.upgrade(config, "heads")

    async with engine.begin() as connection:
        await connection.run_sync(upgrade)
