"""The few statements a batch runs, for SQLite through its own driver and for any other
database through SQLAlchemy.

A consumed batch runs a handful of statement shapes: read rows by key, upsert aggregates
with their version checked, insert journal, inbox and outbox rows, delete published outbox
rows. On SQLite each such statement costs about 5 µs in the sqlite3 module and about 100 µs
through SQLAlchemy's async execution (greenlet switches, execution contexts, result proxies),
which made SQLAlchemy most of a service's CPU. So for a SQLite file the batch talks to
``sqlite3`` directly, on the event loop's thread, with the SQL written once per table from
the same ``sa.Table`` metadata; for PostgreSQL it uses SQLAlchemy Core as everywhere else.
Schema, migrations and every query off the hot path stay with SQLAlchemy.

Both implementations run the same integration tests (SQLite and PostgreSQL).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shared.aggregates import Aggregate, Key, Row
from shared.db import open_sqlite
from shared.observability import METRICS
from shared.tables import consumer_offsets

# An offset only moves forward within one cluster (a revoked instance finishing a late batch
# cannot rewind it); offsets of another cluster (a broker formatted anew) are replaced.
_ADVANCE = {
    "next_offset": "CASE WHEN {t}.cluster_id = excluded.cluster_id "
    "THEN {greatest}({t}.next_offset, excluded.next_offset) ELSE excluded.next_offset END",
    "cluster_id": "excluded.cluster_id",
    "updated_at": "excluded.updated_at",
}


class Transaction(Protocol):
    """One batch's transaction: the statement shapes the batch unit of work needs."""

    async def select_in(self, table: sa.Table, key_columns: Sequence[str], keys: Sequence[Key]) -> list[Row]: ...
    async def upsert(self, aggregate: Aggregate[Any], rows: Sequence[Row]) -> int: ...
    async def insert(self, table: sa.Table, rows: Sequence[Row]) -> None: ...
    async def insert_ids(self, table: sa.Table, rows: Sequence[Row]) -> list[int]: ...
    async def advance_offsets(self, rows: Sequence[Row]) -> None: ...
    def savepoint(self) -> contextlib.AbstractAsyncContextManager[None]: ...


class Database(Protocol):
    """Where a service's batches are stored."""

    def transaction(self) -> contextlib.AbstractAsyncContextManager[Transaction]: ...
    async def delete_ids(self, table: sa.Table, ids: Sequence[int]) -> None: ...
    async def read_offsets(self) -> list[Row]: ...
    async def close(self) -> None: ...


def open_database(engine: AsyncEngine) -> Database:
    """The batch store for ``engine``'s database: sqlite3 itself for a SQLite file."""
    url = engine.url
    if url.get_backend_name().startswith("sqlite") and url.database not in (None, "", ":memory:"):
        return SqliteDatabase(str(url.database))
    return AlchemyDatabase(engine)


# --------------------------------------------------------------------- SQLAlchemy


class AlchemyTransaction:
    """The statement shapes in SQLAlchemy Core, inside one AsyncConnection transaction."""

    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection
        self._dialect = connection.dialect.name

    async def select_in(self, table: sa.Table, key_columns: Sequence[str], keys: Sequence[Key]) -> list[Row]:
        result = await self._connection.execute(_alchemy_select(table, tuple(key_columns)), {"keys": list(keys)})
        return [dict(row) for row in result.mappings()]

    async def upsert(self, aggregate: Aggregate[Any], rows: Sequence[Row]) -> int:
        result = await self._connection.execute(_alchemy_upsert(aggregate, self._dialect), list(rows))
        return len(result.all())

    async def insert(self, table: sa.Table, rows: Sequence[Row]) -> None:
        await self._connection.execute(table.insert(), list(rows))

    async def insert_ids(self, table: sa.Table, rows: Sequence[Row]) -> list[int]:
        statement = table.insert().returning(table.c.id, sort_by_parameter_order=True)
        return list((await self._connection.execute(statement, list(rows))).scalars())

    async def advance_offsets(self, rows: Sequence[Row]) -> None:
        await self._connection.execute(_alchemy_advance(self._dialect), list(rows))

    @contextlib.asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        async with self._connection.begin_nested():
            yield


class AlchemyDatabase:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        async with self._engine.begin() as connection:
            yield AlchemyTransaction(connection)

    async def delete_ids(self, table: sa.Table, ids: Sequence[int]) -> None:
        async with self._engine.begin() as connection:
            await connection.execute(table.delete().where(table.c.id.in_(list(ids))))

    async def read_offsets(self) -> list[Row]:
        async with self._engine.connect() as connection:
            return [dict(row) for row in (await connection.execute(sa.select(consumer_offsets))).mappings()]

    async def close(self) -> None:
        """The engine belongs to the service, which disposes of it."""


_ALCHEMY: dict[tuple[Any, ...], Any] = {}


def _alchemy_select(table: sa.Table, key_columns: tuple[str, ...]) -> sa.Select[Any]:
    cache_key = ("select", table, key_columns)
    if (found := _ALCHEMY.get(cache_key)) is None:
        key = table.c[key_columns[0]] if len(key_columns) == 1 else sa.tuple_(*(table.c[k] for k in key_columns))
        found = _ALCHEMY[cache_key] = sa.select(table).where(key.in_(sa.bindparam("keys", expanding=True)))
    return found


def _alchemy_advance(dialect: str) -> Any:
    cache_key = ("advance", dialect)
    if (found := _ALCHEMY.get(cache_key)) is None:
        insert = (postgresql.insert if dialect == "postgresql" else sqlite_dialect.insert)(consumer_offsets)
        greatest = "GREATEST" if dialect == "postgresql" else "max"
        found = _ALCHEMY[cache_key] = insert.on_conflict_do_update(
            index_elements=[consumer_offsets.c.topic, consumer_offsets.c.partition],
            set_={
                column: sa.text(sql.format(t="consumer_offsets", greatest=greatest)) for column, sql in _ADVANCE.items()
            },
        )
    return found


def _alchemy_upsert(aggregate: Aggregate[Any], dialect: str) -> Any:
    cache_key = ("upsert", id(aggregate), dialect)
    if (found := _ALCHEMY.get(cache_key)) is None:
        table, keys = aggregate.table, aggregate.key_columns
        insert = (postgresql.insert if dialect == "postgresql" else sqlite_dialect.insert)(table)
        updated = {c: insert.excluded[c] for c in aggregate.columns if c not in keys and c != "created_at"}
        found = _ALCHEMY[cache_key] = insert.on_conflict_do_update(
            index_elements=[table.c[k] for k in keys],
            set_=updated,
            # Only the version that was read may be replaced; a new row (version 1) only if none exists.
            where=table.c.version == insert.excluded.version - 1,
        ).returning(*(table.c[k] for k in keys))
    return found


# --------------------------------------------------------------------- sqlite3


def _to_sqlite(value: Any) -> Any:
    """Values as SQLAlchemy's SQLite types store them, so either side reads the other's rows."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dict | list):  # a JSON column: stored as SQLAlchemy's JSON type writes it
        return json.dumps(value)
    return value


class _SqliteTable:
    """The SQL for one table, written once from its metadata."""

    def __init__(self, table: sa.Table) -> None:
        self.name = table.name
        self.columns = [c.name for c in table.c]
        self.datetimes = frozenset(c.name for c in table.c if isinstance(c.type, sa.DateTime))
        self.jsons = frozenset(c.name for c in table.c if isinstance(c.type, sa.JSON))
        self._selects: dict[tuple[str, ...], str] = {}
        self._inserts: dict[tuple[str, ...], str] = {}

    def select_in(self, key_columns: tuple[str, ...]) -> str:
        if (sql := self._selects.get(key_columns)) is None:
            listed = ", ".join(f'"{c}"' for c in self.columns)
            if len(key_columns) == 1:
                where = f'"{key_columns[0]}" IN (SELECT value FROM json_each(?))'
            else:
                parts = ", ".join(f"json_extract(value, '$[{i}]')" for i in range(len(key_columns)))
                where = f"({', '.join(f'{chr(34)}{k}{chr(34)}' for k in key_columns)}) IN (SELECT {parts} FROM json_each(?))"
            sql = self._selects[key_columns] = f'SELECT {listed} FROM "{self.name}" WHERE {where}'
        return sql

    def insert(self, columns: tuple[str, ...]) -> str:
        if (sql := self._inserts.get(columns)) is None:
            listed = ", ".join(f'"{c}"' for c in columns)
            sql = self._inserts[columns] = (
                f'INSERT INTO "{self.name}" ({listed}) VALUES ({", ".join("?" * len(columns))})'
            )
        return sql

    def from_sqlite(self, row: sqlite3.Row) -> Row:
        values = dict(zip(self.columns, row, strict=True))
        for name in self.datetimes:
            if isinstance(value := values[name], str):
                values[name] = datetime.fromisoformat(value).replace(tzinfo=UTC)
        for name in self.jsons:
            if isinstance(value := values[name], str):
                values[name] = json.loads(value)
        return values


_SQLITE_TABLES: dict[sa.Table, _SqliteTable] = {}
_SQLITE_UPSERTS: dict[int, tuple[str, tuple[str, ...]]] = {}


def _sqlite_table(table: sa.Table) -> _SqliteTable:
    if (found := _SQLITE_TABLES.get(table)) is None:
        found = _SQLITE_TABLES[table] = _SqliteTable(table)
    return found


def _sqlite_upsert(aggregate: Aggregate[Any]) -> tuple[str, tuple[str, ...]]:
    if (found := _SQLITE_UPSERTS.get(id(aggregate))) is None:
        columns = aggregate.columns
        keys = aggregate.key_columns
        listed = ", ".join(f'"{c}"' for c in columns)
        updates = ", ".join(f'"{c}" = excluded."{c}"' for c in columns if c not in keys and c != "created_at")
        sql = (
            f'INSERT INTO "{aggregate.table.name}" ({listed}) VALUES ({", ".join("?" * len(columns))}) '
            f"ON CONFLICT ({', '.join(chr(34) + k + chr(34) for k in keys)}) DO UPDATE SET {updates} "
            # Only the version that was read may be replaced; a new row (version 1) only if none exists.
            f'WHERE "{aggregate.table.name}".version = excluded.version - 1'
        )
        found = _SQLITE_UPSERTS[id(aggregate)] = (sql, columns)
    return found


_OFFSET_COLUMNS = tuple(c.name for c in consumer_offsets.c)
_SQLITE_ADVANCE = (
    f"INSERT INTO consumer_offsets ({', '.join(_OFFSET_COLUMNS)}) VALUES ({', '.join('?' * len(_OFFSET_COLUMNS))}) "
    "ON CONFLICT (topic, partition) DO UPDATE SET "
    + ", ".join(f"{c} = {sql.format(t='consumer_offsets', greatest='max')}" for c, sql in _ADVANCE.items())
)


def _params(columns: Iterable[str], rows: Sequence[Row]) -> list[tuple[Any, ...]]:
    names = tuple(columns)
    return [tuple(_to_sqlite(row.get(c)) for c in names) for row in rows]


class SqliteTransaction:
    """The statement shapes on a raw sqlite3 connection inside BEGIN IMMEDIATE ... COMMIT."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection
        self._savepoints = 0

    async def select_in(self, table: sa.Table, key_columns: Sequence[str], keys: Sequence[Key]) -> list[Row]:
        shape = _sqlite_table(table)
        METRICS.statements.inc()
        encoded = json.dumps([list(k) if isinstance(k, tuple) else k for k in keys])
        return [shape.from_sqlite(r) for r in self._connection.execute(shape.select_in(tuple(key_columns)), (encoded,))]

    async def upsert(self, aggregate: Aggregate[Any], rows: Sequence[Row]) -> int:
        sql, columns = _sqlite_upsert(aggregate)
        METRICS.statements.inc()
        return self._connection.executemany(sql, _params(columns, rows)).rowcount

    async def insert(self, table: sa.Table, rows: Sequence[Row]) -> None:
        columns = tuple(rows[0])
        METRICS.statements.inc()
        self._connection.executemany(_sqlite_table(table).insert(columns), _params(columns, rows))

    async def advance_offsets(self, rows: Sequence[Row]) -> None:
        METRICS.statements.inc()
        self._connection.executemany(_SQLITE_ADVANCE, _params(_OFFSET_COLUMNS, rows))

    async def insert_ids(self, table: sa.Table, rows: Sequence[Row]) -> list[int]:
        await self.insert(table, rows)
        # The write lock is ours for the whole transaction and the key is SQLite's rowid
        # (max + 1 per row), so the rows just inserted hold the last len(rows) ids in order.
        (last,) = self._connection.execute("SELECT last_insert_rowid()").fetchone()
        return list(range(last - len(rows) + 1, last + 1))

    @contextlib.asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        self._savepoints += 1
        name = f"sp{self._savepoints}"
        self._connection.execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            self._connection.execute(f"ROLLBACK TO {name}")
            self._connection.execute(f"RELEASE {name}")
            raise
        self._connection.execute(f"RELEASE {name}")


class SqliteDatabase:
    """One sqlite3 connection of the service's own, used on the event loop's thread.

    Statements take microseconds, and a lock held by another process blocks at most
    ``SQLITE_BUSY_MS`` before "database is locked" (a system fault, retried with backoff).
    """

    def __init__(self, path: str) -> None:
        self._path = path
        self._connection: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        if self._connection is None:
            self._connection = open_sqlite(self._path)
        return self._connection

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        connection = self._connect()
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield SqliteTransaction(connection)
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

    async def delete_ids(self, table: sa.Table, ids: Sequence[int]) -> None:
        connection = self._connect()
        METRICS.statements.inc()
        connection.execute("BEGIN IMMEDIATE")
        try:
            connection.execute(
                f'DELETE FROM "{table.name}" WHERE id IN (SELECT value FROM json_each(?))', (json.dumps(list(ids)),)
            )
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

    async def read_offsets(self) -> list[Row]:
        shape = _sqlite_table(consumer_offsets)
        listed = ", ".join(shape.columns)
        return [shape.from_sqlite(r) for r in self._connect().execute(f"SELECT {listed} FROM consumer_offsets")]

    async def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


__all__ = [
    "AlchemyDatabase",
    "Database",
    "SqliteDatabase",
    "Transaction",
    "open_database",
]
