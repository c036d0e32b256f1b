"""Retention (issue 19): what each service forgets, or moves out of its database, and when.

Every service runs one :class:`Pruner` beside its consumer (shared.service). A *pass* goes over
the service's steps, each in batches of at most ``RETENTION_BATCH_ROWS`` rows per transaction,
until nothing is left to do; the next pass comes ``RETENTION_EVERY_SECONDS`` later. Time is the
service's clock (X8), so a test that moves its clock makes rows expire at the next pass.

Two kinds of step (docs/operations.md has the whole table):

* :class:`Expiry`: rows deleted once older than a window. Every service's ``inbox`` (handled
  message ids, kept for the deduplication window: consumed offsets are stored with the effects,
  so the inbox only has to recognise a producer's duplicates) and ``idempotency_keys`` (a repeat
  after the window is a new command, as Stripe does).
* :class:`Archive`: rows *moved* to daily archive files once older than ``archive_after`` and
  no longer needed by anything live, declared by the service that owns them (its
  ``ServiceDefinition.archives``): the notification service's notices (with their email's
  delivery, send log and release) and the saga's order transitions (``order_audit``).

Money records (wallets and their movements, holds, the ledger, payments, refunds, orders,
disputes) are on no list: a unit test fails if a table with an amount is ever added.

**The hot path first.** A batch is one short transaction; after each, the pruner pauses at least
``RETENTION_PAUSE_MS`` and, while the service's consumer is at work, at least
``RETENTION_BUSY_RATIO`` times as long as the batch took. That rule is the back-pressure: a
database that is busy (the consumer's batches, another process, disk contention) answers more
slowly, so the pauses grow with it, and the pruner never spends more than a tenth (by default)
of the time in the database while messages flow. Once the consumer has had no batch for
``RETENTION_IDLE_SECONDS`` (quiet hours, or a backlog after a long outage or a clock move), the
pauses shrink to ``RETENTION_PAUSE_MS`` alone: the next batch of messages waits for at most one
short transaction. It cannot starve: every pause ends. The statements need no index on the age
columns to be correct; the indexes (``messaging_0004``) make them cheap: an expiry is
``DELETE ... WHERE key IN (SELECT key ... WHERE age < cutoff LIMIT n)``, and an archive walks its
table by primary key from the oldest row and stops at the first one not old enough.

**Archives are files**, compressed JSON lines under the service's data folder
(:func:`archive_root`): ``<root>/<table>/<YYYY-MM-DD>/<first id>-<last id>-<nonce>.jsonl.gz``, the
day being the rows' own (the age column's, UTC). Not an archive table: the point of archiving is
that the database stops growing, and a table beside the live ones would keep all of it in the
same file (and in every backup, every restore and every ``VACUUM``). A batch is moved atomically
in this order: read the rows (a snapshot that takes no lock), write the file, fsync it, rename it
into place and fsync its folder, and only then delete, in one transaction, the rows that are
still as they were read (same ``version`` where the table has one). A crash before the delete
leaves the rows in the database and a copy in the archive: they are archived again by the next
pass, so a row can appear twice in the archive (the same id; with a version, the later one
counts), never zero times. :func:`read_archive` reads an archive back.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip
import json
import os
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.clock import Clock
from shared.db import reading
from shared.logging import RateLimitedLog, get_logger
from shared.observability import METRICS
from shared.settings import RetentionSettings
from shared.tables import idempotency_keys, inbox

log = get_logger(__name__)

Row = dict[str, Any]

PRUNER_OFF: dict[str, str] = {"RETENTION_ENABLED": "false"}
"""The environment of a stack that moves its clock by days to test other things (the scenarios,
the chaos run, the e2e and fault tests' stack) and then sends deliberate duplicates: with the
pruner on, a move past the inbox window would make those duplicates new messages, as it would a
real one arriving a week late. ``make run`` and the soak run keep the pruner on; its own tests
move the clock on purpose."""


# ---------------------------------------------------------------------- the steps


@dataclass(frozen=True, slots=True)
class Batch:
    """What one batch did: rows deleted (or moved), and whether more may be waiting."""

    rows: int
    more: bool


class Step(Protocol):
    """One table's retention: batches run until one says there is no more."""

    @property
    def table(self) -> sa.Table: ...
    @property
    def action(self) -> str: ...
    def tables(self) -> tuple[sa.Table, ...]: ...
    def begin_pass(self) -> None: ...
    async def batch(self, engine: AsyncEngine, now: datetime, limit: int) -> Batch: ...


def cutoff(now: datetime, keep_for: timedelta) -> datetime:
    """The oldest time still kept: rows from before it are expired. Always UTC (SQLite compares
    the stored text, which is UTC)."""
    return (now - keep_for).astimezone(UTC)


@dataclass(frozen=True, slots=True)
class Expiry:
    """Rows deleted once their ``age`` column is older than ``keep_for``."""

    table: sa.Table
    key: str
    """The (single-column) primary key, by which a batch's rows are named."""
    age: str
    keep_for: timedelta
    action: str = "deleted"

    def tables(self) -> tuple[sa.Table, ...]:
        return (self.table,)

    def begin_pass(self) -> None:
        """Nothing to remember between batches: each deletes the oldest that are left."""

    async def batch(self, engine: AsyncEngine, now: datetime, limit: int) -> Batch:
        key, age = self.table.c[self.key], self.table.c[self.age]
        oldest = sa.select(key).where(age < cutoff(now, self.keep_for)).limit(limit)
        async with engine.begin() as connection:
            result = await connection.execute(self.table.delete().where(key.in_(oldest)))
        deleted = int(result.rowcount or 0)
        return Batch(deleted, more=deleted >= limit)


async def expire(engine: AsyncEngine, expiry: Expiry, now: datetime, limit: int = 200) -> int:
    """Everything ``expiry`` finds expired at ``now``, deleted in batches; how many rows went."""
    total = 0
    while True:
        batch = await expiry.batch(engine, now, limit)
        total += batch.rows
        if not batch.more:
            return total


def messaging_expiries(settings: RetentionSettings) -> tuple[Expiry, ...]:
    """The expiries of the messaging tables every service database has (shared.tables)."""
    return (
        Expiry(inbox, "message_id", "received_at", settings.inbox_window),
        Expiry(idempotency_keys, "scoped_key", "created_at", settings.idempotency_window),
    )


@dataclass(frozen=True, slots=True)
class Related:
    """Rows of another table that belong to an archived row: its ``column`` holds the archived
    row's :attr:`Archive.key`. Moved with it (``moved``), or only read to decide whether it may go."""

    table: sa.Table
    column: str
    moved: bool = True


@dataclass(frozen=True, slots=True)
class Candidate:
    """An archived table's row old enough to go, with its related rows (by related table name)."""

    row: Row
    related: Mapping[str, Sequence[Row]]


def _always(_candidate: Candidate, _cutoff: datetime) -> bool:
    return True


@dataclass(frozen=True, slots=True)
class Archive:
    """Rows moved to the archive once their ``age`` is older than the archive window and
    ``movable`` says nothing live needs them; declared by the service that owns the table."""

    table: sa.Table
    age: str
    key: str
    """The column its :class:`Related` rows refer to."""
    related: tuple[Related, ...] = ()
    movable: Callable[[Candidate, datetime], bool] = _always
    id: str = "id"
    """An increasing integer primary key: rows are walked in its order, oldest first."""


@dataclass(slots=True)
class ArchiveStep:
    """One :class:`Archive` with its window and folder; see the module docstring."""

    archive: Archive
    keep_for: timedelta
    root: Path
    action: str = "archived"
    _after: int | None = field(default=None, init=False)
    """The last id looked at in this pass: rows kept back (still needed) are not read again."""

    @property
    def table(self) -> sa.Table:
        return self.archive.table

    def tables(self) -> tuple[sa.Table, ...]:
        return (self.archive.table, *(r.table for r in self.archive.related if r.moved))

    def begin_pass(self) -> None:
        self._after = None

    async def batch(self, engine: AsyncEngine, now: datetime, limit: int) -> Batch:
        oldest = cutoff(now, self.keep_for)
        read, expired, reached_young, related = await self._read(engine, limit, oldest)
        more = not reached_young and read >= limit
        if expired:
            self._after = int(expired[-1][self.archive.id])
        chosen = [c for c in _candidates(expired, related, self.archive) if self.archive.movable(c, oldest)]
        if not chosen:
            return Batch(0, more=more)
        records = [self._record(c) for c in chosen]
        await asyncio.to_thread(write_archive, self.root, self.table.name, records, self.archive.age)
        moved = await self._delete(engine, [c.row for c in chosen])
        return Batch(moved, more=more)

    async def _read(self, engine: AsyncEngine, limit: int, oldest: datetime) -> tuple[int, list[Row], bool, list[Row]]:
        """The next ``limit`` rows by id, those of them expired, whether a young one ended them, and
        the expired ones' related rows: one snapshot, which takes no lock."""
        table, archive = self.table, self.archive
        query = sa.select(table).order_by(table.c[archive.id]).limit(limit)
        if self._after is not None:
            query = query.where(table.c[archive.id] > self._after)
        related: list[Row] = []
        async with reading(engine) as connection:
            rows = [_aware(dict(r)) for r in (await connection.execute(query)).mappings()]
            expired, reached_young = expired_prefix(rows, archive.age, oldest)
            keys = sorted({r[archive.key] for r in expired})
            for each in archive.related if keys else ():
                found = await connection.execute(sa.select(each.table).where(each.table.c[each.column].in_(keys)))
                related.extend({"_table": each.table.name, **_aware(dict(r))} for r in found.mappings())
        return len(rows), expired, reached_young, related

    def _record(self, candidate: Candidate) -> Row:
        moved = {r.table.name for r in self.archive.related if r.moved}
        return {
            "table": self.table.name,
            "row": candidate.row,
            "related": {name: list(rows) for name, rows in candidate.related.items() if name in moved},
        }

    async def _delete(self, engine: AsyncEngine, rows: Sequence[Row]) -> int:
        table, archive = self.table, self.archive
        ident = table.c[archive.id]
        async with engine.begin() as connection:
            if "version" in table.c:  # only rows still as they were archived: a changed one goes next pass
                pairs = [(r[archive.id], r["version"]) for r in rows]
                unchanged = sa.select(ident, table.c[archive.key]).where(sa.tuple_(ident, table.c.version).in_(pairs))
                found = (await connection.execute(unchanged.with_for_update())).all()
                ids, keys = [i for i, _ in found], sorted({k for _, k in found})
            else:
                ids, keys = [r[archive.id] for r in rows], sorted({r[archive.key] for r in rows})
            if not ids:
                return 0
            for each in archive.related:
                if each.moved:
                    await connection.execute(each.table.delete().where(each.table.c[each.column].in_(keys)))
            await connection.execute(table.delete().where(ident.in_(ids)))
        return len(ids)


def expired_prefix(rows: Sequence[Row], age: str, oldest: datetime) -> tuple[list[Row], bool]:
    """The rows (in id order) before the first that is not expired, and whether one was found.

    Ids grow with time, so the first row young enough to keep ends the walk: everything after
    it is younger still (up to a row committed a moment out of order, which the next pass takes).
    """
    for index, row in enumerate(rows):
        if row[age] >= oldest:
            return list(rows[:index]), True
    return list(rows), False


def _candidates(rows: Sequence[Row], related: Sequence[Row], archive: Archive) -> list[Candidate]:
    by_key: dict[tuple[str, Any], list[Row]] = defaultdict(list)
    columns = {r.table.name: r.column for r in archive.related}
    for each in related:
        name = each["_table"]
        row = {k: v for k, v in each.items() if k != "_table"}
        by_key[(name, row[columns[name]])].append(row)
    return [
        Candidate(row, {r.table.name: by_key.get((r.table.name, row[archive.key]), []) for r in archive.related})
        for row in rows
    ]


def _aware(row: Row) -> Row:
    """SQLite gives back naive datetimes; every stored time is UTC."""
    for name, value in row.items():
        if isinstance(value, datetime) and value.tzinfo is None:
            row[name] = value.replace(tzinfo=UTC)
    return row


# ---------------------------------------------------------------------- the archive files


def archive_root(settings: RetentionSettings, database_url: str, service: str) -> Path:
    """The service's archive folder: ``RETENTION_ARCHIVE_DIR/<service>``; unset, ``archive/<service>``
    beside its SQLite file (the service's data folder), or ``.data/archive/<service>`` for PostgreSQL."""
    if settings.archive_dir is not None:
        return settings.archive_dir / service
    url = make_url(database_url)
    if url.get_backend_name().startswith("sqlite") and url.database not in (None, "", ":memory:"):
        return Path(str(url.database)).parent / "archive" / service
    return Path(".data") / "archive" / service


def _json(value: Any) -> Any:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    raise TypeError(f"cannot archive a {type(value).__name__}")


def write_archive(root: Path, table: str, records: Sequence[Row], age: str) -> list[Path]:
    """Write ``records`` (``{"table", "row", "related"}``) durably, one file per day of the rows'
    age; returns the files. Each file is complete or absent: written aside, fsynced, renamed into
    place, its folder fsynced (the rows are deleted only after this returns)."""
    days: dict[date, list[Row]] = defaultdict(list)
    for record in records:
        days[_day_of(record["row"], age)].append(record)
    return [_write_day(root / table / day.isoformat(), rows) for day, rows in sorted(days.items())]


def _day_of(row: Row, age: str) -> date:
    return _as_utc(row[age]).date()


def _as_utc(value: datetime) -> datetime:
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def _write_day(folder: Path, records: Sequence[Row]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    ids = [r["row"].get("id") for r in records]
    first, last = (min(ids), max(ids)) if all(isinstance(i, int) for i in ids) else (0, 0)
    # The nonce: two passes (or two instances) that archive overlapping rows never overwrite a file.
    target = folder / f"{first:012d}-{last:012d}-{uuid.uuid4().hex[:8]}.jsonl.gz"
    descriptor, temporary = tempfile.mkstemp(dir=folder, prefix=".", suffix=".partial")
    try:
        with os.fdopen(descriptor, "wb") as raw:
            with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as compressed:
                for record in records:
                    line = json.dumps(record, default=_json, sort_keys=True, separators=(",", ":"))
                    compressed.write(line.encode() + b"\n")
            raw.flush()
            os.fsync(raw.fileno())
        Path(temporary).replace(target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            Path(temporary).unlink()
        raise
    for directory in (folder, folder.parent, folder.parent.parent):  # the rename, and new day folders
        _fsync_directory(directory)
    return target


def _fsync_directory(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def read_archive(root: Path, table: str) -> Iterator[Row]:
    """Every record archived for ``table`` under ``root``, oldest day first (as ``zcat`` would
    print them: ``zcat <root>/<table>/*/*.jsonl.gz``). A row may appear twice (module docstring)."""
    for path in sorted((root / table).glob("*/*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as lines:
            for line in lines:
                yield json.loads(line)


# ---------------------------------------------------------------------- the pruner


def service_steps(archives: Sequence[Archive], settings: RetentionSettings, root: Path) -> list[Step]:
    """What a service prunes: the messaging tables' expiries, then its own archives."""
    steps: list[Step] = list(messaging_expiries(settings))
    steps.extend(ArchiveStep(a, settings.archive_after, root) for a in archives)
    return steps


def pruned_tables(steps: Sequence[Step]) -> tuple[sa.Table, ...]:
    """Every table ``steps`` delete rows from (the money guard's subject)."""
    return tuple(table for step in steps for table in step.tables())


class Pruner:
    """Runs a service's retention steps; see the module docstring."""

    def __init__(
        self,
        engine: AsyncEngine,
        steps: Sequence[Step],
        clock: Clock,
        settings: RetentionSettings,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        timer: Callable[[], float] = time.monotonic,
        last_busy: Callable[[], float] | None = None,
    ) -> None:
        """``last_busy`` tells (on ``timer``'s scale) when the service's consumer last applied a
        batch; without it the consumer counts as always at work."""
        self.engine = engine
        self.steps = list(steps)
        self.clock = clock
        self.settings = settings
        self._sleep, self._timer = sleep, timer
        self._last_busy = last_busy
        self._errors = RateLimitedLog(log, interval=60.0)

    @property
    def tables(self) -> tuple[sa.Table, ...]:
        return pruned_tables(self.steps)

    def pause_after(self, took: float) -> float:
        """The pause after a batch that took ``took`` seconds: the module docstring's rule."""
        least = self.settings.pause_ms / 1000
        return least if self.consumer_idle() else max(least, took * self.settings.busy_ratio)

    def consumer_idle(self) -> bool:
        """The consumer has applied no batch for ``idle_seconds``: nothing on the hot path to yield to."""
        if self._last_busy is None:
            return False
        return self._timer() - self._last_busy() >= self.settings.idle_seconds

    def batch_rows(self, step: Step) -> int:
        """Rows per transaction for ``step``: archive batches are larger (module docstring)."""
        return self.settings.archive_batch_rows if isinstance(step, ArchiveStep) else self.settings.batch_rows

    async def prune(self) -> dict[str, int]:
        """One pass: every step until it has nothing left; rows gone per table."""
        began = self._timer()
        now = self.clock.now()
        gone: dict[str, int] = {}
        for step in self.steps:
            step.begin_pass()
            counter = METRICS.retention_rows.labels(step.table.name, step.action)
            while True:
                started = self._timer()
                batch = await step.batch(self.engine, now, self.batch_rows(step))
                counter.inc(batch.rows)
                gone[step.table.name] = gone.get(step.table.name, 0) + batch.rows
                await self._sleep(self.pause_after(self._timer() - started))
                if not batch.more:
                    break
        METRICS.retention_pass_seconds.set(self._timer() - began)
        return gone

    async def run(self) -> None:
        """Pass after pass, ``every_seconds`` apart; a failed pass (the database busy or away) is
        logged and the next one tries again."""
        while True:
            try:
                gone = await self.prune()
                if any(gone.values()):
                    log.info("retention pass", **{k: v for k, v in gone.items() if v})
            except Exception as error:
                self._errors.warning("retention pass failed; the next one tries again", error=repr(error))
            await self._sleep(self.settings.every_seconds)
