"""Transactional outbox: outgoing records are stored with the state change that caused them,
then a relay publishes them to Kafka.

The relay is woken as soon as a transaction that wrote to the outbox commits, so
nothing waits on a timer; the timer (``poll_seconds``) only catches rows left over
by a crash or a broker outage. Published rows are deleted. A crash between
publish and delete publishes a row again: consumers deduplicate on message_id.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

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


_INSERT = outbox.insert()
_PENDING = sa.select(outbox.c.id, outbox.c.topic, outbox.c.key, outbox.c.value, outbox.c.headers).order_by(outbox.c.id)


async def store_records(connection: AsyncConnection, records: list[OutgoingRecord]) -> None:
    """Add records to the outbox inside the caller's transaction."""
    if not records:
        return
    now = datetime.now(UTC)
    await connection.execute(
        _INSERT,
        [{"topic": r.topic, "key": r.key, "value": r.value, "headers": r.headers, "created_at": now} for r in records],
    )


class RecordPublisher(Protocol):
    """Sends records to Kafka; ``send`` only enqueues, ``flush`` waits for the acks."""

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
        self.published = 0

    def wake(self) -> None:
        """Called after a commit that stored records: publish them now."""
        self._wake.set()

    async def run(self) -> None:
        """Publish until cancelled; broker or database errors are retried, never dropped."""
        backoff = 0.1
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._poll_seconds)
            self._wake.clear()
            try:
                while await self.publish_pending() == self._batch_size:
                    pass
                backoff = 0.1
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox relay failed; will retry", retry_in_seconds=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                self._wake.set()

    async def publish_pending(self) -> int:
        """Publish one batch of pending rows; returns how many there were."""
        async with self._engine.connect() as connection:
            rows = (await connection.execute(_PENDING.limit(self._batch_size))).all()
            await connection.rollback()
        if not rows:
            return 0
        # Enqueue in id order before awaiting any ack: the producer keeps per-partition order.
        acks = [await self._publisher.send(OutgoingRecord(row.topic, row.key, row.value, row.headers)) for row in rows]
        await asyncio.gather(*acks)
        async with self._engine.begin() as connection:
            await connection.execute(outbox.delete().where(outbox.c.id.in_([row.id for row in rows])))
        self.published += len(rows)
        return len(rows)
