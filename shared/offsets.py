"""Kafka offset commits that never run ahead of the database and never hold up the next batch.

Offsets of a batch are committed only after its effects are stored, and only the
offsets of that batch (never the consumer's fetch position, which may already be
past records still being handled). Commits run in the background, one at a time and
at most every ``interval`` seconds, each covering every batch stored since the last:
the consumer goes on to its next batch instead of waiting a broker round trip, and
the broker is not asked to write a commit for every small batch. A commit lost to a crash or a
rebalance only means a redelivery, which the inbox recognises.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Protocol

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from shared.consumer import ConsumedRecord
from shared.logging import get_logger

log = get_logger(__name__)


class Committer(Protocol):
    async def commit(self, offsets: dict[TopicPartition, int]) -> None: ...


class OffsetCommitter:
    """Coalesces processed offsets and commits them in the background."""

    def __init__(self, interval: float = 0.1) -> None:
        self._interval = interval
        self._pending: dict[TopicPartition, int] = {}
        self._task: asyncio.Task[None] | None = None
        self._pausing = False

    def stored(self, consumer: Committer, records: Iterable[ConsumedRecord]) -> None:
        """Records whose effects are committed to the database: their offsets may be committed."""
        for record in records:
            partition = TopicPartition(record.topic, record.partition)
            self._pending[partition] = max(self._pending.get(partition, 0), record.offset + 1)
        if self._pending and (self._task is None or self._task.done()):
            self._task = asyncio.create_task(self._commit_all(consumer))

    async def commit_now(self, consumer: Committer) -> None:
        """Commit everything stored, now (before partitions are revoked, at shutdown): a commit
        in flight is awaited, the pause after it is not."""
        if self._task is not None:
            if self._pausing:
                self._task.cancel()
            await asyncio.wait({self._task})
            if not self._task.cancelled():
                self._task.exception()  # retrieved: a commit that failed only means a redelivery
        if self._pending:
            await self._commit_all(consumer, pause=False)

    async def _commit_all(self, consumer: Committer, *, pause: bool = True) -> None:
        while self._pending:
            offsets, self._pending = self._pending, {}
            try:
                await consumer.commit(offsets)
            except KafkaError as error:
                # e.g. partitions revoked by a rebalance: their new owner redelivers, the inbox dedupes.
                log.warning("offset commit failed; records will be redelivered", error=repr(error))
            if pause:
                self._pausing = True
                try:
                    await asyncio.sleep(self._interval)
                finally:
                    self._pausing = False
