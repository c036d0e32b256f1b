"""Transactional outbox: outgoing records are stored with the state change that caused them,
then a relay publishes them to Kafka.

The consumer hands each committed batch's records (with their row ids) straight to the
relay, which publishes them at once, in batches, without reading them back. The table is
read only at start (rows a previous run left) and after a failed publish. Published rows are
deleted in bulk, at most once a second or every ``batch_size`` rows, not once per batch: a
crash before the delete publishes those rows again, which consumers deduplicate on
message_id. Nothing here polls: the relay sleeps until it is handed records or a delete is due.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.backoff import Backoff
from shared.db import reading
from shared.logging import RateLimitedLog, get_logger
from shared.observability import METRICS
from shared.sql import AlchemyDatabase, Database, Transaction
from shared.tables import outbox

log = get_logger(__name__)

Headers = tuple[tuple[str, bytes], ...]


@dataclass(frozen=True, slots=True)
class OutgoingRecord:
    """One Kafka record waiting in the outbox, exactly as it will be sent."""

    topic: str
    key: bytes | None
    value: bytes
    headers: Headers = field(default_factory=tuple)


def encode_headers(headers: Headers) -> str:
    """Headers as stored: JSON pairs, values as Latin-1 text (any bytes survive the round trip)."""
    return json.dumps([[name, value.decode("latin-1")] for name, value in headers], separators=(",", ":"))


def decode_headers(stored: str) -> Headers:
    return tuple((name, value.encode("latin-1")) for name, value in json.loads(stored))


_PENDING = (
    sa.select(outbox.c.id, outbox.c.topic, outbox.c.key, outbox.c.value, outbox.c.headers)
    .where(outbox.c.id > sa.bindparam("after"))
    .order_by(outbox.c.id)
    .limit(sa.bindparam("limit"))
)


StoredRecord = tuple[int, OutgoingRecord]
"""An outbox row id and the record stored under it."""


async def store_records(tx: Transaction, records: Sequence[OutgoingRecord], now: datetime) -> list[StoredRecord]:
    """Add records to the outbox inside the caller's transaction; returns them with their row ids."""
    if not records:
        return []
    ids = await tx.insert_ids(
        outbox,
        [
            {"topic": r.topic, "key": r.key, "value": r.value, "headers": encode_headers(r.headers), "created_at": now}
            for r in records
        ],
    )
    return list(zip(ids, records, strict=True))


class RecordPublisher(Protocol):
    """Sends records to Kafka; ``send`` enqueues and returns a future that resolves on the broker's ack."""

    async def send(self, record: OutgoingRecord) -> asyncio.Future[object]: ...


class OutboxRelay:
    """Publishes outbox rows in id order, in batches, and deletes them once published."""

    def __init__(
        self,
        engine: AsyncEngine,
        publisher: RecordPublisher,
        *,
        database: Database | None = None,
        batch_size: int = 1000,
        delete_after_seconds: float = 1.0,
    ) -> None:
        self._engine = engine
        self._database = database or AlchemyDatabase(engine)
        self._publisher = publisher
        self._batch_size = batch_size
        self._delete_after = delete_after_seconds
        self._wake = asyncio.Event()
        self._handed_over: deque[tuple[float, list[StoredRecord]]] = deque()
        self._published_ids: list[int] = []
        self._delete_due: float | None = None
        self._scan_table = True  # rows a previous run left behind
        self._errors = RateLimitedLog(log, interval=10.0)
        self._in_flight: tuple[float, int] | None = None  # (handed over at, records) of the batch awaiting acks
        self.published = 0
        METRICS.outbox_backlog.set_function(self.backlog)
        METRICS.outbox_oldest_age.set_function(self.oldest_age)

    def backlog(self) -> int:
        """Records handed over and not yet acknowledged (X5: ``tradeguard_outbox_backlog_records``)."""
        waiting = sum(len(stored) for _, stored in self._handed_over)
        return waiting + (self._in_flight[1] if self._in_flight else 0)

    def oldest_age(self) -> float:
        """Seconds the oldest of them has waited."""
        oldest = self._in_flight[0] if self._in_flight else self._handed_over[0][0] if self._handed_over else None
        return 0.0 if oldest is None else time.perf_counter() - oldest

    def hand_over(self, stored: list[StoredRecord]) -> None:
        """Records of a transaction that just committed: publish them now."""
        self._handed_over.append((time.perf_counter(), stored))
        self._wake.set()

    async def run(self) -> None:
        """Publish until cancelled, starting with rows a previous run left; errors are retried, never dropped."""
        backoff = Backoff(first=0.1, cap=5.0)
        while True:
            try:
                await self._publish_all()
                if self._delete_due is not None and time.monotonic() >= self._delete_due:
                    await self.delete_published()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                delay = backoff.next_delay()
                self._errors.error("outbox relay failed; will retry", error=repr(error), retry_in_seconds=delay)
                self._scan_table = True  # what was handed over is still in the table, in order
                await asyncio.sleep(delay)
                continue
            backoff.reset()
            await self._sleep()

    async def _sleep(self) -> None:
        """Until records are handed over, or the next delete is due; no timer when idle."""
        if self._handed_over:
            return
        timeout = None if self._delete_due is None else max(0.0, self._delete_due - time.monotonic())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=timeout)
        self._wake.clear()

    async def _publish_all(self) -> None:
        if self._scan_table:
            # Rows handed over so far are in the table too: publish them from there, in id order.
            self._handed_over.clear()
            await self.delete_published()
            await self.publish_pending()
            self._scan_table = False
        await self.publish_handed_over()

    async def publish_handed_over(self) -> None:
        """Publish what was handed over since the last call (one wake-up of :meth:`run`)."""
        while self._handed_over:
            # Everything handed over since the last publish goes out together: one wait for acks
            # per relay round, however many small batches the consumer committed meanwhile.
            batch: list[StoredRecord] = []
            now = time.perf_counter()
            first = self._handed_over[0][0]
            while self._handed_over and len(batch) < self._batch_size:
                handed_at, stored = self._handed_over.popleft()
                METRICS.stage("handover", now - handed_at)
                batch.extend(stored)
            self._in_flight = (first, len(batch))
            try:
                await self._publish(batch)
            finally:
                self._in_flight = None

    async def publish_pending(self) -> int:
        """Publish every row in the table not yet published, in id order; returns how many."""
        after, total = self._published_ids[-1] if self._published_ids else 0, 0
        while True:
            async with reading(self._engine) as connection:
                rows = (await connection.execute(_PENDING, {"after": after, "limit": self._batch_size})).all()
                await connection.rollback()
            if not rows:
                return total
            await self._publish(
                [(row.id, OutgoingRecord(row.topic, row.key, row.value, decode_headers(row.headers))) for row in rows]
            )
            after, total = rows[-1].id, total + len(rows)

    async def _publish(self, stored: list[StoredRecord]) -> None:
        if not stored:
            return
        started = time.perf_counter()
        # Enqueue in id order before awaiting any ack: the producer keeps per-partition order.
        acks = [await self._publisher.send(record) for _, record in stored]
        await asyncio.gather(*acks)
        METRICS.stage("publish", time.perf_counter() - started)
        self.published += len(stored)
        self._published_ids.extend(row_id for row_id, _ in stored)
        if self._delete_due is None:
            self._delete_due = time.monotonic() + self._delete_after
        if len(self._published_ids) >= self._batch_size:
            await self.delete_published()

    async def delete_published(self) -> None:
        """Delete the rows already published (also called at shutdown)."""
        ids, self._published_ids = self._published_ids, []
        self._delete_due = None
        if not ids:
            return
        try:
            for start in range(0, len(ids), self._batch_size):
                await self._database.delete_ids(outbox, ids[start : start + self._batch_size])
        except BaseException:
            self._published_ids = ids + self._published_ids  # try again later
            self._delete_due = time.monotonic() + self._delete_after
            raise
