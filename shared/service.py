"""Wiring shared by every service: one FastStream app with a batch subscriber, the service's
database (migrated at start) and the outbox relay."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from aiokafka import ConsumerRebalanceListener, TopicPartition
from faststream import AckPolicy, FastStream
from faststream.kafka.annotations import KafkaMessage

from contracts.topics import ALL_TOPICS, Topic
from shared.backoff import Backoff
from shared.broker import BrokerPublisher, create_broker, ensure_topics
from shared.consumer import BatchConsumer, MessageHandlers
from shared.db import create_engine, migrate
from shared.logging import configure_logging, get_logger
from shared.offsets import Committer, OffsetCommitter
from shared.outbox import OutboxRelay
from shared.settings import ServiceSettings

log = get_logger(__name__)


class ReadinessFile(ConsumerRebalanceListener):  # type: ignore[misc]
    """Exists while the service's consumer holds partitions: launchers and tests wait on it."""

    def __init__(self, path: Path | None) -> None:
        self._path = path

    async def on_partitions_assigned(self, assigned: Collection[TopicPartition]) -> None:
        if self._path is not None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            self._path.touch()
        log.info("partitions assigned", partitions=sorted(f"{p.topic}/{p.partition}" for p in assigned))

    async def on_partitions_revoked(self, _revoked: Collection[TopicPartition]) -> None:
        self.clear()

    def clear(self) -> None:
        if self._path is not None:
            self._path.unlink(missing_ok=True)


@dataclass(frozen=True, slots=True)
class ServiceDefinition:
    """What makes one service different from another: everything else is shared."""

    name: str
    handlers: MessageHandlers
    consumes: tuple[Topic, ...]
    rejections_topic: Topic
    migrations: Path


def build_app(definition: ServiceDefinition, settings: ServiceSettings) -> FastStream:
    """A runnable service: ``await app.run()`` serves until SIGINT/SIGTERM."""
    configure_logging(definition.name, settings.log_level, settings.log_format)
    kafka = settings.kafka
    broker = create_broker(kafka, client_id=definition.name)
    engine = create_engine(settings.database_url)
    relay = OutboxRelay(engine, BrokerPublisher(broker), poll_seconds=settings.outbox_poll_seconds)
    offsets = OffsetCommitter(interval=kafka.commit_interval_ms / 1000)
    backoff = Backoff()
    readiness = ReadinessFile(settings.ready_file)
    readiness.clear()
    consumer = BatchConsumer(
        name=definition.name,
        engine=engine,
        handlers=definition.handlers,
        rejections_topic=definition.rejections_topic,
        hand_over=relay.hand_over,
        attempts=settings.handler_attempts,
    )

    @broker.subscriber(
        *(t.name for t in definition.consumes),
        group_id=definition.name,
        batch=True,
        max_records=kafka.max_batch_records,
        batch_timeout_ms=kafka.batch_timeout_ms,
        auto_offset_reset="earliest",
        session_timeout_ms=kafka.session_timeout_ms,
        heartbeat_interval_ms=kafka.session_timeout_ms // 4,
        # Acknowledgement is ours: offsets are committed after the batch is stored (see shared.offsets).
        ack_policy=AckPolicy.MANUAL,
        listener=readiness,
    )
    async def on_records(message: KafkaMessage) -> None:
        raw = message.raw_message
        records = raw if isinstance(raw, tuple) else (raw,)
        try:
            await consumer.consume(records)
        except Exception:
            log.exception("batch failed; it will be redelivered", records=len(records))
            await backoff.wait()
            await message.nack()  # rewind every partition to the batch's first record: nothing is skipped
            return
        backoff.reset()
        offsets.stored(cast("Committer", message.consumer), records)

    app = FastStream(broker)
    relay_task: asyncio.Task[None] | None = None

    @app.on_startup
    async def prepare() -> None:
        await ensure_topics(kafka.bootstrap_servers, ALL_TOPICS)
        await migrate(engine, definition.migrations)

    @app.after_startup
    async def start_relay() -> None:
        nonlocal relay_task
        relay_task = asyncio.create_task(relay.run(), name=f"{definition.name}-outbox-relay")
        log.info("service started", consumes=[t.name for t in definition.consumes])

    @app.on_shutdown
    async def stop_relay() -> None:
        readiness.clear()
        await offsets.flush()
        if relay_task is not None:
            relay_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await relay_task
        with contextlib.suppress(Exception):
            await relay.publish_pending()  # hand over what is committed before the producer closes

    @app.after_shutdown
    async def close_database() -> None:
        await engine.dispose()
        log.info("service stopped")

    return app


def run(app: FastStream) -> None:
    """Process entry point used by each service's ``__main__``."""
    asyncio.run(app.run())
