"""Transactional outbox: outgoing records are stored with the state change that caused them,
then a relay publishes them to Kafka.

The consumer hands each committed batch's records (with their row ids) straight to
the relay, which publishes them at once, in batches, without reading them back; a
timer (``poll_seconds``) only catches rows left over by a crash or a failed publish,
by scanning the table. Published rows are deleted. A crash between publish and
delete publishes a row again: consumers deduplicate on message_id.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shared.backoff import Backoff
from shared.logging import get_logger
from shared.tables import outbox

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class OutgoingRecord:
    """One Kafka record waiting in the outbox."""

    topic: str
    key: str | None
    value: bytes
    headers: dict[str, str] = field(default_factory=dict)


_INSERT = outbox.insert().returning(outbox.c.id, sort_by_parameter_order=True)
_DELETE = outbox.delete().where(outbox.c.id.in_(sa.bindparam("ids", expanding=True)))
_PENDING = sa.select(outbox.c.id, outbox.c.topic, outbox.c.key, outbox.c.value, outbox.c.headers).order_by(outbox.c.id)


StoredRecord = tuple[int, OutgoingRecord]
"""An outbox row id and the record stored under it."""


async def store_records(connection: AsyncConnection, records: list[OutgoingRecord]) -> list[StoredRecord]:
    """Add records to the outbox inside the caller's transaction; returns them with their row ids."""
    if not records:
        return []
    now = datetime.now(UTC)
    result = await connection.execute(
        _INSERT,
        [{"topic": r.topic, "key": r.key, "value": r.value, "headers": r.headers, "created_at": now} for r in records],
    )
    return list(zip(result.scalars(), records, strict=True))


class RecordPublisher(Protocol):
    """Sends records to Kafka; ``send`` enqueues and returns a future that resolves on the broker's ack."""

    async def send(self, record: OutgoingRecord) -> asyncio.Future[object]: ...


class OutboxRelay:
    """Publishes outbox rows in id order, in batches, then deletes them."""

    def __init__(
        self,
        engine: AsyncEngine,
        publisher: RecordPublisher,
        *,
        batch_size: int = 1000,
        poll_seconds: float = 1.0,
    ) -> None:
        self._engine = engine
        self._publisher = publisher
        self._batch_size = batch_size
        self._poll_seconds = poll_seconds
        self._wake = asyncio.Event()
        self._handed_over: deque[StoredRecord] = deque()
        self._scan_table = True  # rows a previous run left behind
        self.published = 0

    def hand_over(self, stored: list[StoredRecord]) -> None:
        """Records of a transaction that just committed: publish them now."""
        self._handed_over.extend(stored)
        self._wake.set()

    async def run(self) -> None:
        """Publish until cancelled, starting with rows a previous run left; errors are retried, never dropped."""
        backoff = Backoff()
        while True:
            try:
                await self._publish_all()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox relay failed; will retry", retry_in_seconds=backoff.next_delay)
                self._scan_table = True  # what was handed over is still in the table, in order
                await backoff.wait()
                continue
            backoff.reset()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self._poll_seconds)
            except TimeoutError:
                self._scan_table = True
            self._wake.clear()

    async def _publish_all(self) -> None:
        if self._scan_table:
            # Rows handed over so far are in the table too: publish them from there, in id order.
            self._handed_over.clear()
            while await self.publish_pending() == self._batch_size:
                pass
            self._scan_table = False
        while self._handed_over:
            count = min(len(self._handed_over), self._batch_size)
            await self._publish([self._handed_over.popleft() for _ in range(count)])

    async def publish_pending(self) -> int:
        """Publish one batch of rows read from the table; returns how many there were."""
        async with self._engine.connect() as connection:
            rows = (await connection.execute(_PENDING.limit(self._batch_size))).all()
            await connection.rollback()
        await self._publish([(row.id, OutgoingRecord(row.topic, row.key, row.value, row.headers)) for row in rows])
        return len(rows)

    async def _publish(self, stored: list[StoredRecord]) -> None:
        if not stored:
            return
        # Enqueue in id order before awaiting any ack: the producer keeps per-partition order.
        acks = [await self._publisher.send(record) for _, record in stored]
        await asyncio.gather(*acks)
        async with self._engine.begin() as connection:
            await connection.execute(_DELETE, {"ids": [row_id for row_id, _ in stored]})
        self.published += len(stored)
