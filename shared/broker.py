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
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from contracts.topics import Topic
from shared.broker_security import ADMIN, TOPIC_MAX_MESSAGE_BYTES, client_options, create_topics
from shared.outbox import OutgoingRecord
from shared.settings import KafkaSettings

PRODUCER_MAX_REQUEST_BYTES = TOPIC_MAX_MESSAGE_BYTES + 64 * 1024


class MissingTopicsError(RuntimeError):
    """The broker lacks topics this process needs: its set-up has not run."""


def create_producer(settings: KafkaSettings, client_id: str, principal: str) -> AIOKafkaProducer:
    """A producer that never loses or duplicates an acknowledged record (idempotent, acks=all),
    authenticated as ``principal`` (``shared.broker_security``)."""
    return AIOKafkaProducer(
        **client_options(principal, settings.credentials_dir),
        bootstrap_servers=settings.bootstrap_servers,
        client_id=client_id,
        enable_idempotence=True,
        acks="all",
        linger_ms=settings.linger_ms,
        max_request_size=PRODUCER_MAX_REQUEST_BYTES,
        retry_backoff_ms=settings.retry_backoff_ms,
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


class ProducerPublisher:
    """Sends outbox records through a started producer; ``send`` returns the ack future."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self._producer = producer

    async def send(self, record: OutgoingRecord) -> asyncio.Future[object]:
        future: asyncio.Future[object] = await self._producer.send(
            record.topic, record.value, key=record.key, headers=list(record.headers)
        )
        return future


async def ensure_topics(bootstrap_servers: str, topics: Iterable[Topic], principal: str = ADMIN) -> list[str]:
    """Create any missing topics with their declared partition counts; returns those created.
    Only the set-up (``admin``) may create topics: the broker refuses the services."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, **client_options(principal))
    await admin.start()
    try:
        return await create_topics(admin, topics)
    finally:
        await admin.close()


async def require_topics(settings: KafkaSettings, topics: Iterable[Topic], principal: str) -> None:
    """Fail unless every topic exists (and ``principal`` may see it)."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers, **client_options(principal, settings.credentials_dir)
    )
    await admin.start()
    try:
        visible = set(await admin.list_topics())
    finally:
        await admin.close()
    missing = sorted(t.name for t in topics if t.name not in visible)
    if missing:
        msg = (
            f"topics missing, or not readable by {principal!r}: {', '.join(missing)}; the broker's set-up "
            "(scripts/kafka.sh start, or python -m shared.broker_security provision) creates them and their ACLs"
        )
        raise MissingTopicsError(msg)
