"""X2, class (d): a batch that fails for a system fault is offered again, with backoff, until it
is stored; the service reports not-ready meanwhile and ready again after; records of partitions
taken away by a rebalance meanwhile are dropped from the retried batch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiokafka import TopicPartition

from contracts import FundWallet, Money
from shared.consumer import ConsumedRecord
from shared.errors import SystemFault
from shared.settings import KafkaSettings
from shared.subscriber import Readiness, Subscriber
from tests.support.records import Record, record_of


class FlakyBatchConsumer:
    """Fails with a system fault ``failures`` times, then stores; records each offer."""

    def __init__(self, failures: int, readiness: Readiness) -> None:
        self.failures = failures
        self.offers: list[list[int]] = []
        self.ready_while_failing: list[bool] = []
        self._readiness = readiness

    async def consume(self, records: Sequence[ConsumedRecord]) -> None:
        self.offers.append([r.offset for r in records])
        if len(self.offers) > 1:
            self.ready_while_failing.append(self._readiness.ready)
        if self.failures:
            self.failures -= 1
            raise SystemFault("database is locked")


class FakeConsumer:
    def __init__(self, owned: set[TopicPartition]) -> None:
        self.owned = owned

    def assignment(self) -> set[TopicPartition]:
        return self.owned


def _records(partitions: Sequence[int]) -> list[Record]:
    out = []
    for i, partition in enumerate(partitions):
        base = record_of(FundWallet(account_id=f"a{i}", amount=Money(amount_minor=1, currency="USD")))
        out.append(Record(topic=base.topic, value=base.value, key=base.key, partition=partition, headers=base.headers))
    return out


def _subscriber(batch: Any, consumer: FakeConsumer, readiness: Readiness) -> Subscriber:
    return Subscriber(consumer, batch, KafkaSettings(), readiness)


async def test_x2_a_system_fault_is_retried_until_stored_and_readiness_follows() -> None:
    readiness = Readiness(None)
    readiness.set(assigned=True)
    records = _records([0, 1])
    consumer = FakeConsumer({TopicPartition(records[0].topic, p) for p in (0, 1)})
    batch = FlakyBatchConsumer(failures=2, readiness=readiness)

    stored = await _subscriber(batch, consumer, readiness)._apply(list(records))

    assert stored is True
    assert len(batch.offers) == 3  # two faults, then stored: never skipped, never dead-lettered
    assert batch.ready_while_failing == [False, False]
    assert readiness.ready is True


async def test_x2_records_of_partitions_taken_away_meanwhile_are_dropped_from_the_retry() -> None:
    readiness = Readiness(None)
    readiness.set(assigned=True)
    records = _records([0, 1])
    consumer = FakeConsumer({TopicPartition(records[0].topic, 0)})  # partition 1 was revoked
    batch = FlakyBatchConsumer(failures=1, readiness=readiness)

    await _subscriber(batch, consumer, readiness)._apply(list(records))

    assert batch.offers == [[records[0].offset, records[1].offset], [records[0].offset]]
