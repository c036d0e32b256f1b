"""The consume loop: long-poll Kafka, apply each batch, commit its offsets after it is stored.

The loop waits in ``getmany`` until records arrive (the broker holds the fetch open, so an
idle service costs almost nothing and a record is handed over as soon as it lands). A batch
that fails for a system fault (:class:`~shared.errors.SystemFault`: the database is busy or
down) is offered again with exponential backoff and jitter, forever, while the service
reports not-ready; waiting is asynchronous, so heartbeats keep the group membership and the
health endpoint answers. Records of partitions taken away by a rebalance meanwhile are
dropped from the retried batch: their new owner reads them from the last committed offset.

:meth:`Subscriber.stop` ends the loop in order: no further fetch; a batch being applied
finishes (its transaction commits or rolls back) unless it takes longer than the grace, and
a batch waiting to be retried is abandoned; either way an unapplied batch's offsets are never
committed, so the group redelivers it. Then the offsets of what was applied are committed and
the consumer leaves its group (LeaveGroup), so the partitions move at once instead of after
a session timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import ConsumerStoppedError, IllegalStateError, KafkaError

from shared.backoff import Backoff
from shared.consumer import SYSTEM_ERRORS, BatchConsumer, ConsumedRecord
from shared.errors import SystemFault
from shared.logging import RateLimitedLog, get_logger
from shared.observability import METRICS
from shared.offsets import OffsetCommitter
from shared.settings import KafkaSettings

log = get_logger(__name__)

ANCHORING_POLL_MS = 100
"""The poll's wait while partitions are not yet assigned and anchored (see ``Subscriber.run``)."""


class Readiness:
    """Ready while the consumer holds partitions and its database answers; mirrored in a file."""

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self.assigned = False
        self.healthy = True
        self._sync()

    @property
    def ready(self) -> bool:
        return self.assigned and self.healthy

    def set(self, *, assigned: bool | None = None, healthy: bool | None = None) -> None:
        before = self.ready
        if assigned is not None:
            self.assigned = assigned
        if healthy is not None:
            self.healthy = healthy
        if self.ready != before:
            self._sync()

    def _sync(self) -> None:
        if self._path is None:
            return
        if self.ready:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            self._path.touch()
        else:
            self._path.unlink(missing_ok=True)


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, subscriber: Subscriber) -> None:
        self._subscriber = subscriber

    async def on_partitions_revoked(self, _revoked: Collection[TopicPartition]) -> None:
        # Copy what is stored to Kafka before the partitions go (lag monitoring, an owner whose
        # database holds no offsets yet). Bounded: the database's offsets are the record anyway.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._subscriber.offsets.commit_now(self._subscriber.consumer), timeout=5)
        self._subscriber.readiness.set(assigned=False)

    async def on_partitions_assigned(self, assigned: Collection[TopicPartition]) -> None:
        """Start each partition where this service's database says it stands (shared.offsets);
        one it holds nothing for starts at Kafka's committed offset."""
        stored = await self._subscriber.stored_offsets()
        resumed = {p: stored[p] for p in assigned if p in stored}
        for partition, offset in resumed.items():
            self._subscriber.consumer.seek(partition, offset)
        # The others start at Kafka's committed offset; the loop writes it down before it fetches
        # (and only then reports ready: a backup taken from then on holds every partition).
        self._subscriber.unanchored = {p for p in assigned if p not in stored}
        self._subscriber.readiness.set(assigned=bool(assigned) and not self._subscriber.unanchored)
        log.info(
            "partitions assigned",
            partitions=sorted(f"{p.topic}/{p.partition}" for p in assigned),
            from_database=len(resumed),
        )


class Subscriber:
    """Feeds one service's :class:`BatchConsumer` from its consumer group."""

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        batch_consumer: BatchConsumer,
        settings: KafkaSettings,
        readiness: Readiness,
    ) -> None:
        self.consumer = consumer
        self.readiness = readiness
        self.offsets = OffsetCommitter(interval=settings.commit_interval_ms / 1000)
        self.batch_consumer = batch_consumer
        self._settings = settings
        self._errors = RateLimitedLog(log, interval=10.0)
        self._lag: dict[TopicPartition, int] = {}
        self._lag_topics: set[str] = set()
        self.listener = _Rebalance(self)
        # Partitions assigned with no offset in the database: their starting offset is stored
        # before anything is fetched, so a backup taken from then on can replay them.
        self.unanchored: set[TopicPartition] = set()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        # True while the loop waits (for the broker, or before a retry) with nothing half
        # applied: a stop may cancel it there. False while a batch is being applied.
        self._interruptible = False

    async def stored_offsets(self) -> dict[TopicPartition, int]:
        """The offsets stored with the effects, read again while the database is away: starting
        at Kafka's committed offsets instead would skip what a restored database lacks."""
        backoff = Backoff(first=0.1, cap=5.0)
        while True:
            try:
                return await self.batch_consumer.stored_offsets()
            except SYSTEM_ERRORS as error:
                if self._stopping:
                    return {}  # leaving: nothing will be consumed from these positions
                self._errors.warning("reading the stored offsets failed; will retry", error=repr(error))
                await backoff.wait()

    async def run(self) -> None:
        """Consume until :meth:`stop` (or the consumer is stopped)."""
        self._task = asyncio.current_task()
        backoff = Backoff(first=0.1, cap=5.0)
        while not self._stopping:
            if self.unanchored:
                await self._anchor()
            try:
                self._interruptible = True
                batches = await self.consumer.getmany(
                    timeout_ms=self._poll_timeout_ms(), max_records=self._settings.max_batch_records
                )
            except ConsumerStoppedError:
                return
            except KafkaError as error:
                self._errors.error("polling the broker failed; will retry", error=repr(error))
                await backoff.wait()
                continue
            finally:
                self._interruptible = False
            backoff.reset()
            self._record_lag(batches)
            records = [record for partition in batches.values() for record in partition]
            if not records:
                continue
            now_ms = time.time() * 1000
            for record in records:
                METRICS.stage("fetch_wait", max(0.0, (now_ms - record.timestamp) / 1000))
            METRICS.batch_records.observe(len(records))
            if await self._apply(records):
                METRICS.batches.inc()
                self.offsets.stored(self.consumer, records)

    def _poll_timeout_ms(self) -> int:
        """How long the next poll may wait for records: briefly until the partitions are assigned
        and anchored, so that the loop comes back to anchor them (and the service reports ready)
        at once rather than after a whole idle poll."""
        return self._settings.poll_timeout_ms if self.readiness.assigned else ANCHORING_POLL_MS

    async def _anchor(self) -> None:
        """Store where each unanchored partition starts (Kafka's committed offset, or the reset
        policy's): without it, a backup taken before the first record of a partition was
        handled would restore to no offset, and start again past what it lacks."""
        owned = self.consumer.assignment()
        positions: dict[TopicPartition, int] = {}
        for partition in sorted(self.unanchored & owned):
            try:
                positions[partition] = await self.consumer.position(partition)
            except (IllegalStateError, KafkaError) as error:  # revoked meanwhile, or the broker away
                self._errors.warning("a partition's position is not known yet", error=repr(error))
        try:
            await self.batch_consumer.anchor_offsets(positions)
        except SYSTEM_ERRORS as error:
            self._errors.warning("storing the partitions' starting offsets failed; will retry", error=repr(error))
            return
        self.unanchored -= set(positions) | (self.unanchored - owned)
        if not self.unanchored:
            self.readiness.set(assigned=bool(owned))

    def _record_lag(self, batches: Mapping[TopicPartition, Sequence[ConsumedRecord]]) -> None:
        """X5 ``tradeguard_consumer_lag_records``: what the broker holds beyond the records just
        fetched, per topic. A poll that came back empty found every partition caught up."""
        if not batches:
            self._lag.clear()
        for partition, fetched in batches.items():
            end = self.consumer.highwater(partition)
            if fetched and end is not None:
                self._lag[partition] = max(0, end - fetched[-1].offset - 1)
        for topic in {p.topic for p in self._lag} | self._lag_topics:
            METRICS.consumer_lag.labels(topic).set(sum(n for p, n in self._lag.items() if p.topic == topic))
        self._lag_topics |= {p.topic for p in self._lag}

    async def _apply(self, records: list[ConsumedRecord]) -> bool:
        """Apply until stored; False when every record's partition was taken away meanwhile."""
        backoff = Backoff(first=0.05, cap=5.0)
        while True:
            try:
                await self.batch_consumer.consume(records)
            except SystemFault as fault:
                METRICS.system_faults.inc()
                self.readiness.set(healthy=False)
                self._errors.warning("system fault; the batch will be retried", error=str(fault), records=len(records))
            except Exception as error:  # a defect of the mechanism itself: retried, never skipped
                METRICS.system_faults.inc()
                self.readiness.set(healthy=False)
                self._errors.error("batch failed unexpectedly; it will be retried", error=repr(error))
            else:
                if not self.readiness.healthy:
                    log.info("batch applied after retries", attempts=backoff.attempt + 1)
                self.readiness.set(healthy=True)
                self._errors.reset("system fault; the batch will be retried")
                return True
            if self._stopping:  # not applied, so its offsets stay uncommitted: the group redelivers it
                log.info("stopping: the failed batch is left for redelivery", records=len(records))
                return False
            self._interruptible = True
            try:
                await backoff.wait()
            finally:
                self._interruptible = False
            owned = self.consumer.assignment()
            records = [r for r in records if TopicPartition(r.topic, r.partition) in owned]
            if not records:
                return False

    async def stop(self, grace: float = 5.0, bound: float = 3.0) -> None:
        """Stop fetching, let the batch in hand finish (``grace`` seconds at most, else it is
        abandoned and redelivered), commit what was applied and leave the group; each broker
        step waits ``bound`` seconds at most (a commit not made only means a redelivery)."""
        self._stopping = True
        task = self._task
        if task is not None and not task.done():
            if self._interruptible:
                task.cancel()
            await asyncio.wait({task}, timeout=grace)
            if not task.done():
                log.warning("stopping: the batch in hand did not finish in time; it will be redelivered", grace=grace)
                task.cancel()
                await asyncio.wait({task}, timeout=bound)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.offsets.commit_now(self.consumer), timeout=bound)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.consumer.stop(), timeout=bound)  # sends LeaveGroup
