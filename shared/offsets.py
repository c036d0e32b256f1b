"""Where each partition's consumption stands: stored with the effects, copied to Kafka.

**The database is the record.** A batch's next offsets are written in the same transaction
as its effects and inbox rows (:func:`offset_rows`, ``consumer_offsets``), as Kafka Connect
sinks and Flink do. When partitions are assigned, the consumer seeks to the offsets its own
database holds (:func:`stored_offsets`), so a database restored from a backup replays exactly
what it lacks, and a crash between a commit to the database and one to Kafka redelivers
nothing. Offsets stored under another cluster id (a broker whose storage was formatted anew)
are not used: that log starts again from its own committed offsets.

**Kafka keeps a copy**, for lag monitoring and for a database that holds none yet (a first
start). Offsets of a batch are committed only after its effects are stored, and only the
offsets of that batch (never the consumer's fetch position, which may already be past records
still being handled). Commits run in the background, one at a time and at most every
``interval`` seconds, each covering every batch stored since the last: the consumer goes on to
its next batch instead of waiting a broker round trip. A commit lost to a crash or a rebalance
costs nothing: the stored offsets say where to start.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from shared.logging import get_logger

if TYPE_CHECKING:
    from shared.aggregates import Row
    from shared.consumer import ConsumedRecord
    from shared.sql import Database

log = get_logger(__name__)


def next_offsets(records: Iterable[ConsumedRecord]) -> dict[TopicPartition, int]:
    """The offset of the next record to consume, per partition, once ``records`` are handled."""
    offsets: dict[TopicPartition, int] = {}
    for record in records:
        partition = TopicPartition(record.topic, record.partition)
        offsets[partition] = max(offsets.get(partition, 0), record.offset + 1)
    return offsets


def offset_rows(offsets: dict[TopicPartition, int], cluster_id: str, now: datetime) -> list[Row]:
    """``consumer_offsets`` rows for a batch's transaction."""
    return [
        {"topic": p.topic, "partition": p.partition, "next_offset": n, "cluster_id": cluster_id, "updated_at": now}
        for p, n in sorted(offsets.items())
    ]


async def stored_offsets(database: Database, cluster_id: str) -> dict[TopicPartition, int]:
    """The offsets this database stored for ``cluster_id`` (another cluster's are no use here)."""
    rows = await database.read_offsets()
    foreign = {row["cluster_id"] for row in rows if row["cluster_id"] != cluster_id}
    if foreign:
        log.warning(
            "stored offsets of another Kafka cluster ignored (its storage was formatted anew?)",
            cluster=cluster_id,
            stored_for=sorted(foreign),
        )
    return {
        TopicPartition(str(row["topic"]), int(row["partition"])): int(row["next_offset"])
        for row in rows
        if row["cluster_id"] == cluster_id
    }


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
        for partition, offset in next_offsets(records).items():
            self._pending[partition] = max(self._pending.get(partition, 0), offset)
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
                # e.g. partitions revoked by a rebalance: the stored offsets still say where to start.
                log.warning("offset commit to Kafka failed; the database's offsets stand", error=repr(error))
            if pause:
                self._pausing = True
                try:
                    await asyncio.sleep(self._interval)
                finally:
                    self._pausing = False
