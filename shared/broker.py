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
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from contracts.topics import Topic
from shared.outbox import OutgoingRecord
from shared.settings import KafkaSettings

# Topics accept records well past the size a service reads (shared.consumer.MAX_RECORD_BYTES),
# so an oversized record reaches a consumer, gets its verdict and is dead-lettered whole.
TOPIC_MAX_MESSAGE_BYTES = 8 * 1024 * 1024
PRODUCER_MAX_REQUEST_BYTES = TOPIC_MAX_MESSAGE_BYTES + 64 * 1024


def create_producer(settings: KafkaSettings, client_id: str) -> AIOKafkaProducer:
    """A producer that never loses or duplicates an acknowledged record (idempotent, acks=all)."""
    return AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers,
        client_id=client_id,
        enable_idempotence=True,
        acks="all",
        linger_ms=settings.linger_ms,
        max_request_size=PRODUCER_MAX_REQUEST_BYTES,
        retry_backoff_ms=settings.retry_backoff_ms,
    )


def create_consumer(settings: KafkaSettings, group_id: str, *, gather_ms: int = 0) -> AIOKafkaConsumer:
    """A group consumer that hands over raw bytes and never commits on its own (subscribe it
    with a rebalance listener once started). ``gather_ms`` > 0 lets the broker gather records
    that long per fetch instead of answering each one at once."""
    return AIOKafkaConsumer(
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


class ProducerPublisher:
    """Sends outbox records through a started producer; ``send`` returns the ack future."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self._producer = producer

    async def send(self, record: OutgoingRecord) -> asyncio.Future[object]:
        future: asyncio.Future[object] = await self._producer.send(
            record.topic, record.value, key=record.key, headers=list(record.headers)
        )
        return future


async def ensure_topics(bootstrap_servers: str, topics: Iterable[Topic]) -> list[str]:
    """Create any missing topics with their declared partition counts; returns those created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topics if t.name not in existing]
        if not missing:
            return []
        config = {"max.message.bytes": str(TOPIC_MAX_MESSAGE_BYTES)}
        response = await admin.create_topics(
            [NewTopic(t.name, num_partitions=t.partitions, replication_factor=1, topic_configs=config) for t in missing]
        )
        for name, code, *_ in response.topic_errors:
            # Another process may have created it between our list and create: that is fine.
            if code not in (0, TopicAlreadyExistsError.errno):
                raise RuntimeError(f"could not create topic {name}: Kafka error code {code}")
        return [t.name for t in missing]
    finally:
        await admin.close()
