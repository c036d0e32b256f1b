"""Async SQLAlchemy access to a service's own database, and its migrations (Alembic).

SQLite (a file, the default) and PostgreSQL (by URL) behave the same to callers.

Neither may freeze a service: SQLite waits at most ``SQLITE_BUSY_MS`` on the event loop's
thread for a lock another process holds, then fails with "database is locked", which the
consumer treats as a system fault and retries with backoff (asynchronously: heartbeats and
health go on meanwhile). PostgreSQL statements and lock waits have timeouts, and a query
that gets no answer at all is abandoned after ``POSTGRES_COMMAND_TIMEOUT_S``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable, Generator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite
from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

MIGRATIONS = Path(__file__).parent / "migrations"
SQLITE_BUSY_MS = 50
POSTGRES_STATEMENT_TIMEOUT_MS = 10_000
POSTGRES_LOCK_TIMEOUT_MS = 5_000
POSTGRES_COMMAND_TIMEOUT_S = 15.0


READ_ONLY = "tradeguard_read_only"
"""The execution option :func:`reading` sets on its connection."""


@asynccontextmanager
async def reading(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection that only reads (a read API, a worker's scan for due rows).

    On SQLite every other transaction starts with BEGIN IMMEDIATE, which takes the write lock even
    for a SELECT; a read would then wait for whichever batch holds it, blocking the event loop (the
    connection runs inline) up to ``SQLITE_BUSY_MS`` and failing with "database is locked" when
    the holder is on the same loop. A reading connection begins a deferred transaction instead:
    a consistent snapshot that waits for no writer. Writing through it is a bug (SQLite refuses
    the lock upgrade while another connection writes). PostgreSQL needs neither: the option is
    ignored there.
    """
    async with engine.connect() as connection:
        await connection.execution_options(**{READ_ONLY: True})
        yield connection


def create_engine(url: str) -> AsyncEngine:
    """An engine for ``url``; SQLite gets WAL and real transactions (BEGIN IMMEDIATE)."""
    parsed = make_url(url)
    if not parsed.get_backend_name().startswith("sqlite"):
        return create_async_engine(
            url,
            pool_size=5,
            max_overflow=5,
            pool_pre_ping=True,
            pool_timeout=POSTGRES_COMMAND_TIMEOUT_S,
            connect_args={
                "command_timeout": POSTGRES_COMMAND_TIMEOUT_S,
                "timeout": POSTGRES_COMMAND_TIMEOUT_S,
                "server_settings": {
                    "statement_timeout": str(POSTGRES_STATEMENT_TIMEOUT_MS),
                    "lock_timeout": str(POSTGRES_LOCK_TIMEOUT_MS),
                },
            },
        )
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    database = parsed.database or ":memory:"

    async def connect() -> aiosqlite.Connection:
        return await _InlineSQLiteConnection(
            lambda: sqlite3.connect(database, isolation_level=None, check_same_thread=False), 64
        )

    engine = create_async_engine(url, async_creator=connect)
    _make_sqlite_transactional(engine)
    return engine


class _InlineSQLiteConnection(aiosqlite.Connection):
    """aiosqlite's interface, but each call runs on the event loop's own thread.

    A SQLite statement on a local file takes microseconds; aiosqlite hands every one
    to a worker thread and back, which cost ~1 ms of thread switching per statement
    on a busy 2-core machine and dominated every handler. Each service has one
    consumer loop writing to its own file, so blocking the loop for a statement is
    cheaper than any hand-off; a lock held by another process blocks it at most
    ``SQLITE_BUSY_MS``. (Overrides aiosqlite's private hooks; pinned in uv.lock.)
    """

    def __await__(self) -> Generator[Any, None, aiosqlite.Connection]:
        return self._connect().__await__()

    async def _connect(self) -> aiosqlite.Connection:
        if self._connection is None:
            self._connection = self._connector()
        return self

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self._connection is None:
            raise ValueError("Connection closed")
        return fn(*args, **kwargs)

    def stop(self) -> None:
        self._running = False


def open_sqlite(path: str) -> sqlite3.Connection:
    """A raw connection to a service's SQLite file, set up as every connection to it is."""
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    configure_sqlite(connection)
    return connection


def configure_sqlite(connection: Any) -> None:
    """WAL (readers never wait for the writer), a short lock wait, foreign keys on."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _make_sqlite_transactional(engine: AsyncEngine) -> None:
    # pysqlite's own BEGIN handling breaks SAVEPOINT and lets a read-then-write
    # transaction fail on lock upgrade; take the write lock up front instead.
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # The connection is opened with isolation_level=None (no implicit BEGIN).
        configure_sqlite(dbapi_connection)

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # A reading connection (:func:`reading`) takes no lock: in WAL mode its snapshot never
        # waits for the writer, and it never holds up one.
        conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get(READ_ONLY) else "BEGIN IMMEDIATE")


async def migrate(engine: AsyncEngine, service_migrations: Path, to: str = "heads") -> None:
    """Bring the database to the newest schema: the shared messaging tables and the service's own
    (``to`` a revision instead: a test of an upgrade starts from an older schema)."""

    def upgrade(connection: Connection) -> None:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.set_main_option("version_locations", f"{MIGRATIONS / 'versions'} {service_migrations}")
        config.set_main_option("path_separator", "space")
        config.attributes["connection"] = connection
        command.upgrade(config, to)

    async with engine.begin() as connection:
        await connection.run_sync(upgrade)
