"""The one way services connect to Kafka: an idempotent producer for the outbox relay, the
consumer each service's subscriber reads with, and explicit topic creation.

Services talk to aiokafka directly rather than through FastStream's subscriber and
publisher: the consumer must see raw bytes (FastStream's batch parser decodes every header
strictly and drops a whole batch on one bad header), long-poll (FastStream's batch loop
sleeps between empty polls), and dead letters must carry the original headers byte for byte
(FastStream's publisher takes text headers and adds its own).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import OutOfOrderSequenceNumber, ProducerFenced, UnknownProducerId
from aiokafka.structs import RecordMetadata

from contracts.topics import Topic
from shared.broker_security import ADMIN, TOPIC_MAX_MESSAGE_BYTES, client_options, create_topics
from shared.logging import get_logger
from shared.outbox import OutgoingRecord
from shared.settings import KafkaSettings

log = get_logger(__name__)

PRODUCER_MAX_REQUEST_BYTES = TOPIC_MAX_MESSAGE_BYTES + 64 * 1024


class MissingTopicsError(RuntimeError):
    """The broker lacks topics this process needs: its set-up has not run."""


def create_producer(settings: KafkaSettings, client_id: str, principal: str) -> RenewingProducer:
    """A producer that never loses or duplicates an acknowledged record (idempotent, acks=all),
    authenticated as ``principal`` (``shared.broker_security``), made again if the broker loses
    its sequence state (:class:`RenewingProducer`)."""
    return RenewingProducer(
        lambda: AIOKafkaProducer(
            **client_options(principal, settings.credentials_dir),
            bootstrap_servers=settings.bootstrap_servers,
            client_id=client_id,
            enable_idempotence=True,
            acks="all",
            linger_ms=settings.linger_ms,
            max_request_size=PRODUCER_MAX_REQUEST_BYTES,
            retry_backoff_ms=settings.retry_backoff_ms,
        )
    )


def create_consumer(settings: KafkaSettings, group_id: str, principal: str, *, gather_ms: int = 0) -> AIOKafkaConsumer:
    """A group consumer that hands over raw bytes and never commits on its own (subscribe it
    with a rebalance listener once started), authenticated as ``principal``. ``gather_ms`` > 0
    lets the broker gather records that long per fetch instead of answering each one at once."""
    return AIOKafkaConsumer(
        **client_options(principal, settings.credentials_dir),
        bootstrap_servers=settings.bootstrap_servers,
        client_id=group_id,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=settings.session_timeout_ms,
        heartbeat_interval_ms=settings.session_timeout_ms // 4,
        max_poll_interval_ms=settings.max_poll_interval_ms,
        fetch_max_wait_ms=gather_ms or settings.fetch_max_wait_ms,
        fetch_min_bytes=1024 * 1024 if gather_ms else 1,
        max_partition_fetch_bytes=TOPIC_MAX_MESSAGE_BYTES,
        fetch_max_bytes=4 * TOPIC_MAX_MESSAGE_BYTES,
        retry_backoff_ms=settings.retry_backoff_ms,
    )


async def stop_consumer(consumer: AIOKafkaConsumer) -> None:
    """Stop ``consumer`` even when a fetch was backing off after a broker error: aiokafka 0.14's
    fetcher re-raises that fetch's cancellation from ``stop()``. A cancellation of our own task
    still propagates."""
    try:
        await consumer.stop()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise


class RecordSender(Protocol):
    """What a worker that publishes one record at a time needs of a producer."""

    async def send_and_wait(
        self, topic: str, value: bytes, *, key: bytes | None = None, headers: Sequence[tuple[str, bytes]] = ()
    ) -> object: ...


SEQUENCE_LOST: tuple[type[Exception], ...] = (OutOfOrderSequenceNumber, UnknownProducerId, ProducerFenced)
"""What an idempotent producer cannot come back from: the broker no longer has (or refuses) the
sequence state of its producer id, after a broker restart for instance."""
RENEW_STOP_SECONDS = 5.0
RENEW_FIRST_RETRY, RENEW_LAST_RETRY = 0.2, 5.0


class RenewingProducer:
    """An idempotent producer that is made again when the broker lost its sequence state.

    aiokafka's idempotent producer stops for good on ``OutOfOrderSequenceNumber``: its sender
    task ends and every later send raises (aio-libs/aiokafka#1017, seen here when the broker
    restarts under load). The Java client bumps its epoch instead; we take a new producer id,
    which is what that amounts to. What was in flight on the old producer fails, so its caller
    sends it again (the outbox relay from its table, a client's retry); a copy that had landed
    after all is a duplicate, which every consumer's inbox absorbs.
    """

    def __init__(self, make: Callable[[], AIOKafkaProducer]) -> None:
        self._make = make
        self._producer = make()
        self._renewing: asyncio.Task[None] | None = None
        self.renewals = 0

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        if self._renewing is not None:  # a producer still starting would be left open
            self._renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._renewing
        await self._producer.stop()

    async def send(
        self, topic: str, value: bytes, *, key: bytes | None = None, headers: Sequence[tuple[str, bytes]] = ()
    ) -> asyncio.Future[Any]:
        """Enqueue one record; the future is its acknowledgement (as ``AIOKafkaProducer.send``)."""
        return (await self._send(topic, value, key, headers))[1]

    async def send_and_wait(
        self, topic: str, value: bytes, *, key: bytes | None = None, headers: Sequence[tuple[str, bytes]] = ()
    ) -> RecordMetadata:
        producer, future = await self._send(topic, value, key, headers)
        try:
            metadata: RecordMetadata = await future
        except SEQUENCE_LOST:
            await self._renewed(producer)  # so that the caller's retry goes to the new producer
            raise
        return metadata

    async def _send(
        self, topic: str, value: bytes, key: bytes | None, headers: Sequence[tuple[str, bytes]]
    ) -> tuple[AIOKafkaProducer, asyncio.Future[Any]]:
        if self._renewing is not None:
            await asyncio.shield(self._renewing)
        producer = self._producer
        try:
            future: asyncio.Future[Any] = await producer.send(topic, value, key=key, headers=list(headers))
        except SEQUENCE_LOST:
            await self._renewed(producer)
            raise
        future.add_done_callback(lambda done: self._check(producer, done))
        return producer, future

    async def _renewed(self, broken: AIOKafkaProducer) -> None:
        renewing = self._renew_soon(broken)
        if renewing is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(renewing)

    def _check(self, producer: AIOKafkaProducer, done: asyncio.Future[Any]) -> None:
        if not done.cancelled() and isinstance(done.exception(), SEQUENCE_LOST):
            self._renew_soon(producer)

    def _renew_soon(self, broken: AIOKafkaProducer) -> asyncio.Task[None] | None:
        """The one renewal of ``broken`` (started now unless under way); None once it was replaced."""
        if broken is self._producer and self._renewing is None:
            self._renewing = asyncio.get_running_loop().create_task(self._renew(broken))
        return self._renewing

    async def _renew(self, broken: AIOKafkaProducer) -> None:
        log.warning("producer lost its sequence state at the broker; starting a new one")
        try:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(broken.stop(), RENEW_STOP_SECONDS)
            delay = RENEW_FIRST_RETRY
            while True:  # the broker may still be coming back: sends wait meanwhile
                fresh = self._make()
                try:
                    await fresh.start()
                    break
                except Exception as error:
                    log.warning("new producer could not start; retrying", error=repr(error), retry_in_seconds=delay)
                    with contextlib.suppress(Exception):
                        await fresh.stop()
                    await asyncio.sleep(delay)
                    delay = min(2 * delay, RENEW_LAST_RETRY)
            self._producer = fresh
            self.renewals += 1
        finally:
            self._renewing = None


class ProducerPublisher:
    """Sends outbox records through a started producer; ``send`` returns the ack future."""

    def __init__(self, producer: RenewingProducer) -> None:
        self._producer = producer

    async def send(self, record: OutgoingRecord) -> asyncio.Future[object]:
        return await self._producer.send(record.topic, record.value, key=record.key, headers=record.headers)


async def ensure_topics(bootstrap_servers: str, topics: Iterable[Topic], principal: str = ADMIN) -> list[str]:
    """Create any missing topics with their declared partition counts; returns those created.
    Only the set-up (``admin``) may create topics: the broker refuses the services."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, **client_options(principal))
    await admin.start()
    try:
        return await create_topics(admin, topics)
    finally:
        await admin.close()


async def require_topics(settings: KafkaSettings, topics: Iterable[Topic], principal: str) -> str:
    """Fail unless every topic exists (and ``principal`` may see it); the cluster's id, which
    the offsets a service stores with its effects belong to (shared.offsets)."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers, **client_options(principal, settings.credentials_dir)
    )
    await admin.start()
    try:
        visible = set(await admin.list_topics())
        cluster_id = str((await admin.describe_cluster())["cluster_id"])
    finally:
        await admin.close()
    missing = sorted(t.name for t in topics if t.name not in visible)
    if missing:
        msg = (
            f"topics missing, or not readable by {principal!r}: {', '.join(missing)}; the broker's set-up "
            "(scripts/kafka.sh start, or python -m shared.broker_security provision) creates them and their ACLs"
        )
        raise MissingTopicsError(msg)
    return cluster_id
