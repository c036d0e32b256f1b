"""The payment service driven in-process: its real handlers, ports and database, with the
network worker sending to a real funding network and handing its answers back over a real
broker, as the running service does.

:class:`PaymentDriver` feeds records to the service's batch consumer and reads what it stored
in its outbox. :func:`network_loop` runs the network worker beside it, with a Kafka producer of
its own, and pumps the ``RecordNetworkAnswer`` commands the worker publishes on the payment
commands topic back into the same consumer (the service's subscriber does that in production).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts import Envelope, Message, RecordNetworkAnswer, decode_message
from contracts.topics import MESSAGE_TYPE_HEADER, PAYMENT_COMMANDS
from services.payment.app import DEFINITION as PAYMENT
from services.payment.network import FundingNetwork
from services.payment.ports import PaymentPorts
from services.payment.worker import NetworkWorker
from shared.broker import create_producer
from shared.broker_security import ADMIN, client_options
from shared.clock import SYSTEM_CLOCK, Clock
from shared.consumer import BatchConsumer, ConsumedRecord, is_system_failure
from shared.errors import SystemFault
from shared.settings import KafkaSettings
from shared.tables import outbox
from tests.support.eventually import eventually
from tests.support.records import record_of

SYSTEM_FAULT_RETRIES = 100


@dataclass
class PaymentDriver:
    """Sends records to the payment service's consumer (one batch at a time) and reads its outbox."""

    engine: AsyncEngine
    network: FundingNetwork
    clock: Clock = SYSTEM_CLOCK
    ports: PaymentPorts = field(init=False)
    consumer: BatchConsumer = field(init=False)
    _lock: asyncio.Lock = field(init=False, default_factory=asyncio.Lock)

    def __post_init__(self) -> None:
        self.ports = PaymentPorts(self.network)
        self.consumer = BatchConsumer(
            name="payment",
            engine=self.engine,
            handlers=PAYMENT.handlers,
            rejections_topic=PAYMENT.rejections_topic,
            hand_over=lambda _stored: None,  # nothing relays: tests read the outbox table
            clock=self.clock,
            dependencies=self.ports,
        )

    async def consume(self, records: list[ConsumedRecord]) -> None:
        """One batch, retried as the subscriber retries it while the database is busy (on SQLite
        the network worker's reads take the write lock too). The test and the answer pump share
        one consumer: one batch at a time, as the subscriber runs them."""
        async with self._lock:
            for _attempt in range(SYSTEM_FAULT_RETRIES):
                try:
                    await self.consumer.consume(records)
                except SystemFault:  # nothing was stored: the same batch again, shortly
                    await asyncio.sleep(0.05)
                else:
                    return
            await self.consumer.consume(records)

    async def send(self, *messages: Message, key: str | None = None) -> None:
        """Each message as one batch of its own, in order (``key``: their idempotency key)."""
        for message in messages:
            await self.consume([record_of(message, idempotency_key=key)])

    async def stored(self) -> list[Envelope[Any]]:
        """Every envelope the service has stored to publish, oldest first (dead letters left out)."""
        for _attempt in range(SYSTEM_FAULT_RETRIES):
            try:
                rows = await self._outbox_rows()
                break
            except Exception as error:  # on SQLite a read takes the write lock too: busy a moment
                if not is_system_failure(error):
                    raise
                await asyncio.sleep(0.05)
        else:
            rows = await self._outbox_rows()
        return [decode_message(row.value) for row in rows if not row.topic.endswith("dead-letter")]

    async def _outbox_rows(self) -> Sequence[Any]:
        async with self.engine.connect() as conn:
            return (await conn.execute(sa.select(outbox.c.topic, outbox.c.value).order_by(outbox.c.id))).all()

    async def messages(self, kind: type[Message], where: Callable[[Any], bool] = lambda _m: True) -> list[Any]:
        """The stored messages of one type that ``where`` picks, oldest first."""
        return [e.payload for e in await self.stored() if isinstance(e.payload, kind) and where(e.payload)]

    async def wait_for(
        self, kind: type[Message], where: Callable[[Any], bool] = lambda _m: True, count: int = 1, timeout: float = 20.0
    ) -> list[Any]:
        """The stored messages of one type, once there are ``count`` of them (or the timeout passed)."""
        return await eventually(lambda: self.messages(kind, where), lambda found: len(found) >= count, timeout)


async def _answers_consumer(bootstrap: str) -> AIOKafkaConsumer:
    """A consumer of the payment commands topic positioned at its end: it sees only what comes next."""
    consumer = AIOKafkaConsumer(**client_options(ADMIN), bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    partitions = [TopicPartition(PAYMENT_COMMANDS.name, p) for p in range(PAYMENT_COMMANDS.partitions)]
    consumer.assign(partitions)
    await consumer.seek_to_end(*partitions)
    for partition in partitions:
        await consumer.position(partition)  # resolve the end now, before the worker sends anything
    return consumer


async def _pump(consumer: AIOKafkaConsumer, driver: PaymentDriver) -> None:
    answer_type = RecordNetworkAnswer.message_type.encode()
    while True:
        for records in (await consumer.getmany(timeout_ms=200)).values():
            answers = [r for r in records if (MESSAGE_TYPE_HEADER, answer_type) in list(r.headers)]
            if answers:
                await driver.consume(answers)


@contextlib.asynccontextmanager
async def network_loop(driver: PaymentDriver, bootstrap: str) -> AsyncIterator[None]:
    """The network worker and the answer pump, running until the block ends."""
    consumer = await _answers_consumer(bootstrap)
    producer = create_producer(
        KafkaSettings(bootstrap_servers=bootstrap), client_id="payment-test-worker", principal="payment"
    )
    await producer.start()
    worker = NetworkWorker(driver.engine, producer, driver.ports, driver.clock)
    tasks = [asyncio.create_task(worker.run()), asyncio.create_task(_pump(consumer, driver))]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await producer.stop()
        await consumer.stop()
