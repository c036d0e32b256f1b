"""The outbox relay against a real broker and real databases (X2): rows are published in order,
with their keys and headers byte for byte, as soon as a commit wakes the relay, and then deleted;
a signed record (X9) is stored with its signature and still verifies once published."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts import Balance, Money, WalletFunded
from contracts.topics import MESSAGE_TYPE_HEADER, SIGNER_HEADER, Key, Topic
from services.account.app import DEFINITION as ACCOUNT
from shared.broker import ProducerPublisher, RenewingProducer, create_producer, ensure_topics
from shared.broker_security import ADMIN, client_options
from shared.clock import ManualClock
from shared.consumer import outgoing
from shared.db import migrate
from shared.outbox import OutboxRelay, OutgoingRecord, store_records
from shared.settings import KafkaSettings
from shared.signing import Keyring, recipients
from shared.sql import open_database
from shared.tables import outbox
from tests.support.eventually import eventually

pytestmark = pytest.mark.kafka


@pytest.fixture
async def topic(kafka_bootstrap: str) -> Topic:
    topic = Topic(f"test.relay.{uuid.uuid4().hex[:8]}", 3, Key.ORDER_ID, "relay test")
    await ensure_topics(kafka_bootstrap, [topic])
    return topic


@pytest.fixture
async def publisher(kafka_bootstrap: str) -> AsyncIterator[ProducerPublisher]:
    producer: RenewingProducer = create_producer(
        KafkaSettings(bootstrap_servers=kafka_bootstrap), client_id="relay-test", principal=ADMIN
    )
    await producer.start()
    yield ProducerPublisher(producer)
    await producer.stop()


@pytest.fixture
async def migrated(engine: AsyncEngine) -> AsyncEngine:
    await migrate(engine, ACCOUNT.migrations)
    return engine


async def _rows_left(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(sa.select(sa.func.count()).select_from(outbox))).scalar_one())


async def read(kafka_bootstrap: str, topic: Topic, count: int) -> list[tuple[bytes, bytes, list[tuple[str, bytes]]]]:
    consumer = AIOKafkaConsumer(
        topic.name, **client_options(ADMIN), bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    got: list[tuple[bytes, bytes, list[tuple[str, bytes]]]] = []
    try:
        async with asyncio.timeout(20):
            while len(got) < count:
                for batch in (await consumer.getmany(timeout_ms=200)).values():
                    got.extend((r.key, r.value, list(r.headers)) for r in batch)
    finally:
        await consumer.stop()
    return got


async def test_relay_publishes_committed_rows_in_order_and_deletes_them(
    migrated: AsyncEngine, publisher: ProducerPublisher, topic: Topic, kafka_bootstrap: str, clock: ManualClock
) -> None:
    records = [
        OutgoingRecord(topic.name, f"order-{i % 2}".encode(), f"value-{i}".encode(), (("tg-type", b"Test"),))
        for i in range(20)
    ]
    async with open_database(migrated).transaction() as tx:
        await store_records(tx, records, clock.now())
    # Rows already in the table (as after a crash) go out as the relay starts.
    relay = OutboxRelay(migrated, publisher, delete_after_seconds=0.1)
    task = asyncio.create_task(relay.run())

    got = await read(kafka_bootstrap, topic, 20)
    assert await eventually(lambda: _rows_left(migrated), lambda n: n == 0) == 0  # deleted once published
    task.cancel()

    for key in (b"order-0", b"order-1"):
        values = [value for k, value, _ in got if k == key]
        assert values == [r.value for r in records if r.key == key]  # per-key order kept
    assert all(headers == [("tg-type", b"Test")] for _, _, headers in got)
    assert relay.published == 20


async def test_x2_any_key_and_header_bytes_survive_the_outbox(
    migrated: AsyncEngine, publisher: ProducerPublisher, topic: Topic, kafka_bootstrap: str, clock: ManualClock
) -> None:
    # Dead letters carry the original record, which need not be UTF-8 anywhere.
    odd = OutgoingRecord(
        topic.name, b"\xff\xfekey", b"\x00\x80value", (("tg-type", b"\xc3\x28"), ("tg-type", b"again"), ("x", b""))
    )
    async with open_database(migrated).transaction() as tx:
        stored = await store_records(tx, [odd], clock.now())
    relay = OutboxRelay(migrated, publisher)
    task = asyncio.create_task(relay.run())
    relay.hand_over(stored)

    ((key, value, headers),) = await read(kafka_bootstrap, topic, 1)
    task.cancel()

    assert (key, value, tuple(headers)) == (odd.key, odd.value, odd.headers)


async def test_handed_over_rows_are_published_without_reading_the_table(
    migrated: AsyncEngine, publisher: ProducerPublisher, topic: Topic, kafka_bootstrap: str, clock: ManualClock
) -> None:
    relay = OutboxRelay(migrated, publisher, delete_after_seconds=0.1)
    await relay.publish_pending()  # the run starts with a scan of leftovers; do it now, on an empty table
    records = [OutgoingRecord(topic.name, b"order-7", f"value-{i}".encode()) for i in range(5)]
    async with open_database(migrated).transaction() as tx:
        stored = await store_records(tx, records, clock.now())
    task = asyncio.create_task(relay.run())
    relay.hand_over(stored)

    got = await read(kafka_bootstrap, topic, 5)
    assert await eventually(lambda: _rows_left(migrated), lambda n: n == 0) == 0  # deleted in bulk once acked
    task.cancel()

    assert [value for _, value, _ in got] == [r.value for r in records]
    assert relay.published == 5


async def test_relay_keeps_rows_while_the_broker_cannot_take_them(
    migrated: AsyncEngine, topic: Topic, clock: ManualClock
) -> None:
    class BrokerDown:
        async def send(self, _record: OutgoingRecord) -> asyncio.Future[object]:
            raise ConnectionError("broker unreachable")

    async with open_database(migrated).transaction() as tx:
        await store_records(tx, [OutgoingRecord(topic.name, b"k", b"v")], clock.now())
    with pytest.raises(ConnectionError):
        await OutboxRelay(migrated, BrokerDown()).publish_pending()

    async with migrated.connect() as conn:
        assert (await conn.execute(sa.select(sa.func.count()).select_from(outbox))).scalar_one() == 1


async def test_x9_a_signed_record_is_stored_with_its_signature_and_verifies_once_published(  # noqa: PLR0917 - pytest passes fixtures by position
    migrated: AsyncEngine,
    publisher: ProducerPublisher,
    topic: Topic,
    kafka_bootstrap: str,
    clock: ManualClock,
    keyring: Keyring,
) -> None:
    funded = WalletFunded(
        account_id="alice",
        amount=Money(amount_minor=100, currency="USD"),
        balance=Balance(amount_minor=100, currency="USD"),
    )
    # MACed for the readers of the account service's events topic, sent to this test's own topic.
    made = outgoing(funded, source="account", correlation_id="c", idempotency_key="k")
    record = dataclasses.replace(made, topic=topic.name)
    async with open_database(migrated).transaction() as tx:
        stored = await store_records(tx, [record], clock.now())
    relay = OutboxRelay(migrated, publisher)
    task = asyncio.create_task(relay.run())
    relay.hand_over(stored)

    ((key, value, headers),) = await read(kafka_bootstrap, topic, 1)
    task.cancel()

    assert dict(headers)[SIGNER_HEADER] == b"account"
    assert (key, value, tuple(headers)) == (record.key, record.value, record.headers)
    # The account service's events topic is where a WalletFunded is trusted; the bytes are what
    # count, for each of its readers.
    kind = dict(headers)[MESSAGE_TYPE_HEADER].decode()
    for reader in recipients(funded.topic.name):
        verifier = keyring.verifier(reader)
        signer = verifier.check(headers, message_type=kind, topic=funded.topic.name, key=key, value=value)
        assert signer == "account"
