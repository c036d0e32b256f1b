"""The one way services connect to Kafka: a FastStream broker with safe producer settings,
explicit topic creation, and the outbox relay's publisher."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from faststream.kafka import KafkaBroker

from contracts.topics import Topic
from shared.outbox import OutgoingRecord
from shared.settings import KafkaSettings


def create_broker(settings: KafkaSettings, client_id: str) -> KafkaBroker:
    """A broker whose producer never loses or duplicates an acknowledged record.

    Idempotent producer with acks from every in-sync replica; topics are never
    auto-created (``ensure_topics`` creates them with their partition counts).
    """
    return KafkaBroker(
        settings.bootstrap_servers,
        client_id=client_id,
        enable_idempotence=True,
        acks="all",
        linger_ms=settings.linger_ms,
        allow_auto_create_topics=False,
        # FastStream's per-message "received/processed" lines are noise at our rates.
        log_level=logging.DEBUG,
    )


class BrokerPublisher:
    """Publishes outbox records through a connected broker, without waiting per record."""

    def __init__(self, broker: KafkaBroker) -> None:
        self._broker = broker

    async def send(self, record: OutgoingRecord) -> asyncio.Future[object]:
        future: asyncio.Future[object] = await self._broker.publish(
            record.value,
            topic=record.topic,
            key=record.key.encode() if record.key is not None else None,
            headers=record.headers,
            no_confirm=True,
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
        response = await admin.create_topics(
            [NewTopic(t.name, num_partitions=t.partitions, replication_factor=1) for t in missing]
        )
        for name, code, *_ in response.topic_errors:
            # Another process may have created it between our list and create: that is fine.
            if code not in (0, TopicAlreadyExistsError.errno):
                msg = f"could not create topic {name}: Kafka error code {code}"
                raise RuntimeError(msg)
        return [t.name for t in missing]
    finally:
        await admin.close()
