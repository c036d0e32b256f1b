"""The outbox relay against a real broker and real databases: rows are published in order,
with their keys and headers, as soon as a commit wakes the relay, and then deleted."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer
from faststream.kafka import KafkaBroker
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts.topics import Key, Topic
from services.account.app import DEFINITION as ACCOUNT
from shared.broker import BrokerPublisher, create_broker, ensure_topics
from shared.db import migrate
from shared.outbox import OutboxRelay, OutgoingRecord, store_records
from shared.settings import KafkaSettings
from shared.tables import outbox
from tests.support.eventually import eventually

pytestmark = pytest.mark.kafka


@pytest.fixture
async def topic(kafka_bootstrap: str) -> Topic:
    topic = Topic(f"test.relay.{uuid.uuid4().hex[:8]}", 3, Key.ORDER_ID, "relay test")
    await ensure_topics(kafka_bootstrap, [topic])
    return topic


@pytest.fixture
async def broker(kafka_bootstrap: str) -> AsyncIterator[KafkaBroker]:
    broker = create_broker(KafkaSettings(bootstrap_servers=kafka_bootstrap), client_id="relay-test")
    await broker.connect()
    yield broker
    await broker.stop()


@pytest.fixture
async def migrated(engine: AsyncEngine) -> AsyncEngine:
    await migrate(engine, ACCOUNT.migrations)
    return engine


async def _published(relay: OutboxRelay) -> int:
    return relay.published


async def read(kafka_bootstrap: str, topic: Topic, count: int) -> list[tuple[bytes, bytes, dict[str, bytes]]]:
    consumer = AIOKafkaConsumer(topic.name, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    got: list[tuple[bytes, bytes, dict[str, bytes]]] = []
    try:
        async with asyncio.timeout(20):
            while len(got) < count:
                for batch in (await consumer.getmany(timeout_ms=200)).values():
                    got.extend((r.key, r.value, dict(r.headers)) for r in batch)
    finally:
        await consumer.stop()
    return got


async def test_relay_publishes_committed_rows_in_order_and_deletes_them(
    migrated: AsyncEngine, broker: KafkaBroker, topic: Topic, kafka_bootstrap: str
) -> None:
    records = [
        OutgoingRecord(topic.name, f"order-{i % 2}", f"value-{i}".encode(), {"tg-type": "Test"}) for i in range(20)
    ]
    async with migrated.begin() as conn:
        await store_records(conn, records)
    # Rows already in the table (as after a crash) go out as the relay starts; the timer never fires here.
    relay = OutboxRelay(migrated, BrokerPublisher(broker), poll_seconds=60)
    task = asyncio.create_task(relay.run())

    got = await read(kafka_bootstrap, topic, 20)
    await eventually(lambda: _published(relay), lambda n: n == 20)  # the delete follows the acks
    task.cancel()

    for key in (b"order-0", b"order-1"):
        values = [value for k, value, _ in got if k == key]
        assert values == [r.value for r in records if r.key == key.decode()]  # per-key order kept
    assert all(headers["tg-type"] == b"Test" for _, _, headers in got)
    async with migrated.connect() as conn:
        assert (await conn.execute(sa.select(sa.func.count()).select_from(outbox))).scalar_one() == 0
    assert relay.published == 20


async def test_handed_over_rows_are_published_without_reading_the_table(
    migrated: AsyncEngine, broker: KafkaBroker, topic: Topic, kafka_bootstrap: str
) -> None:
    relay = OutboxRelay(migrated, BrokerPublisher(broker), poll_seconds=60)
    await relay.publish_pending()  # the run starts with a scan of leftovers; do it now, on an empty table
    records = [OutgoingRecord(topic.name, "order-7", f"value-{i}".encode()) for i in range(5)]
    async with migrated.begin() as conn:
        stored = await store_records(conn, records)
    task = asyncio.create_task(relay.run())
    relay.hand_over(stored)

    got = await read(kafka_bootstrap, topic, 5)
    await eventually(lambda: _published(relay), lambda n: n == 5)
    task.cancel()

    assert [value for _, value, _ in got] == [r.value for r in records]
    async with migrated.connect() as conn:
        assert (await conn.execute(sa.select(sa.func.count()).select_from(outbox))).scalar_one() == 0


async def test_relay_keeps_rows_while_the_broker_cannot_take_them(migrated: AsyncEngine, topic: Topic) -> None:
    class BrokerDown:
        async def send(self, _record: OutgoingRecord) -> asyncio.Future[object]:
            raise ConnectionError("broker unreachable")

    async with migrated.begin() as conn:
        await store_records(conn, [OutgoingRecord(topic.name, "k", b"v")])
    with pytest.raises(ConnectionError):
        await OutboxRelay(migrated, BrokerDown()).publish_pending()

    async with migrated.connect() as conn:
        assert (await conn.execute(sa.select(sa.func.count()).select_from(outbox))).scalar_one() == 1
