"""Wiring shared by every service: its database (migrated at start), the consumer group that
feeds its batch consumer, the outbox relay, the retention pruner (shared.retention), and the
health endpoint.

Each service is a :class:`ServiceDefinition` (name, handlers, topics, migrations) run by
:class:`Service`; ``python -m services.<name>`` calls :func:`run`, which serves until SIGINT
or SIGTERM (either, also while still starting) and then stops in order (:meth:`Service.stop`):
stop fetching, let the batch in hand finish or abandon it (redelivered), commit the offsets of
what was applied, leave the consumer group, publish what the outbox holds, close the producer,
the HTTP endpoint and the database; then the process exits 0. Every step is bounded, so a
broker or database that does not answer delays the stop by seconds, not forever; a second
signal during the stop ends the process at once (exit 128 + the signal's number; the first one
repeated within SAME_SIGNAL_SECONDS is not a second one).
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from aiokafka.errors import KafkaError

from contracts.catalogue import writers_of
from contracts.topics import ALL_TOPICS, Topic
from shared import tracing
from shared.backoff import Backoff
from shared.broker import ProducerPublisher, create_consumer, create_producer, require_topics
from shared.clock import Clock, clock_from_environment
from shared.consumer import SYSTEM_ERRORS, BatchConsumer, MessageHandlers
from shared.db import create_engine, migrate
from shared.deadlines import Deadlines, DeadlineSweeper
from shared.logging import RateLimitedLog, configure_logging, get_logger
from shared.observability import METRICS, HealthServer, ReadRoute
from shared.outbox import OutboxRelay
from shared.retention import Archive, Pruner, archive_root, service_steps
from shared.settings import ServiceSettings
from shared.signing import (
    SigningNotConfiguredError,
    install,
    load_keyring,
    process_keyring,
    signing_dir_from_environment,
)
from shared.sql import open_database
from shared.subscriber import Readiness, Subscriber

log = get_logger(__name__)
T = TypeVar("T")

STOP_GRACE_SECONDS = 5.0
"""How long a stop lets the batch in hand finish; one still running then is abandoned (its
transaction rolls back, its offsets stay uncommitted, the group redelivers it)."""
STOP_STEP_SECONDS = 3.0
"""The longest any other step of a stop waits (a commit, LeaveGroup, the outbox's flush, a close)."""
SAME_SIGNAL_SECONDS = 0.25
"""A repeat of the first signal this soon is the same request: Ctrl-C in a terminal reaches a
process run by ``uv run`` twice (the group's, and uv's forwarded copy). Later, or another signal,
is a second one: the process exits at once."""


class StopSignals:
    """What each SIGINT or SIGTERM a service gets means: the first, stop in order; the same one
    again within SAME_SIGNAL_SECONDS, nothing (a repeat); any other while stopping, exit at once."""

    def __init__(self) -> None:
        self._first: tuple[signal.Signals, float] | None = None

    def meaning(self, signum: signal.Signals, now: float) -> Literal["stop", "repeat", "exit"]:
        if self._first is None:
            self._first = (signum, now)
            return "stop"
        first, at = self._first
        return "repeat" if signum == first and now - at < SAME_SIGNAL_SECONDS else "exit"


@dataclass(frozen=True, slots=True)
class ServiceDefinition:
    """What makes one service different from another: everything else is shared."""

    name: str
    handlers: MessageHandlers
    consumes: tuple[Topic, ...]
    rejections_topic: Topic
    migrations: Path
    dependencies: Callable[[Any, Clock], object] | None = None
    """Builds the service's ports from its settings (``ctx.deps`` in its handlers)."""
    read_api: Callable[[Service], Mapping[str, ReadRoute]] | None = None
    """GET routes the service answers on its HTTP port, beside /health (the payment history)."""
    workers: tuple[Callable[[Service], Coroutine[Any, Any, None]], ...] = ()
    """Background tasks beside the consumer (the payment service's network worker), started
    once the producer is up and cancelled first at stop."""
    deadlines: Deadlines | None = None
    """Where the service's aggregates keep their timers (S4): a sweeper nudges the due ones."""
    fetch_wait_ms: int = 0
    """0: every record is fetched as soon as it lands (services on an order's path). More: the
    broker gathers records this long per fetch, for a service no order waits on (fewer fetch
    round trips, each over all its partitions, at the price of that much latency)."""
    archives: tuple[Archive, ...] = ()
    """The service's own tables whose old rows move to the archive (shared.retention), beside
    the messaging tables' expiries every service has."""


class Service:
    """One running service; see the module docstring. Create it on the running event loop."""

    def __init__(self, definition: ServiceDefinition, settings: ServiceSettings, clock: Clock | None = None) -> None:
        clock = clock or clock_from_environment()
        self.clock = clock
        self.definition = definition
        # X9: signing is not optional. Without the stack's keyring this fails here, before any
        # connection. As a process (run()) the keyring holds this service's key only; in-process
        # (tests) it is the one TRADEGUARD_SIGNING_DIR names.
        self.keyring = process_keyring()
        if definition.name not in self.keyring.principals:
            msg = f"the signing keyring at {self.keyring.directory} holds no key of {definition.name!r}"
            raise SigningNotConfiguredError(msg)
        self.settings = settings
        kafka = settings.kafka
        self.engine = create_engine(settings.database_url)
        METRICS.count_statements(self.engine)
        self.database = open_database(self.engine)
        self.producer = create_producer(kafka, client_id=definition.name, principal=definition.name)
        self.relay = OutboxRelay(self.engine, ProducerPublisher(self.producer), database=self.database)
        self.readiness = Readiness(settings.ready_file)
        self.readiness.set(assigned=False)
        self.dependencies = definition.dependencies(settings, clock) if definition.dependencies else None
        batch_consumer = BatchConsumer(
            name=definition.name,
            engine=self.engine,
            handlers=definition.handlers,
            rejections_topic=definition.rejections_topic,
            hand_over=self.relay.hand_over,
            attempts=settings.handler_attempts,
            clock=clock,
            database=self.database,
            dependencies=self.dependencies,
            verifier=self.keyring.verifier(definition.name),
        )
        self.subscriber = Subscriber(
            create_consumer(
                kafka, definition.name, definition.name, gather_ms=definition.fetch_wait_ms or kafka.fetch_gather_ms
            ),
            batch_consumer,
            kafka,
            self.readiness,
        )
        routes = definition.read_api(self) if definition.read_api else None
        self.http = (
            HealthServer(settings.http_port, lambda: self.readiness.ready, host=settings.http_host, routes=routes)
            if settings.http_port is not None
            else None
        )
        self.sweeper = (
            DeadlineSweeper(
                self.engine, ProducerPublisher(self.producer), definition.deadlines, clock, source=definition.name
            )
            if definition.deadlines is not None
            else None
        )
        retention = settings.retention
        root = archive_root(retention, settings.database_url, definition.name)
        self.pruner = Pruner(
            self.engine,
            service_steps(definition.archives, retention, root),
            clock,
            retention,
            last_busy=lambda: self.subscriber.batch_consumer.last_batch_at,
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False
        self._startup_errors = RateLimitedLog(log, interval=10.0)

    async def start(self) -> None:
        """Connect and migrate, retrying while the broker or the database is not there yet."""
        if self.http is not None:
            await self.http.start()
        kafka = self.settings.kafka
        # The set-up made the topics and ACLs (shared.broker_security); a service may not.
        needed = [t for t in ALL_TOPICS if t in self.definition.consumes or self.definition.name in writers_of(t)]
        cluster = await self._retrying(
            "finding its topics", lambda: require_topics(kafka, needed, self.definition.name)
        )
        self.subscriber.batch_consumer.cluster_id = cluster  # offsets are stored with the effects, for this cluster
        await self._retrying("migrating the database", lambda: migrate(self.engine, self.definition.migrations))
        await self._retrying("starting the producer", self.producer.start)
        await self._retrying("starting the consumer", self.subscriber.consumer.start)
        self.subscriber.consumer.subscribe(
            [t.name for t in self.definition.consumes], listener=self.subscriber.listener
        )
        name = self.definition.name
        self._tasks = [
            asyncio.create_task(self.relay.run(), name=f"{name}-outbox-relay"),
            asyncio.create_task(self.subscriber.run(), name=f"{name}-subscriber"),
            *(asyncio.create_task(worker(self), name=f"{name}-worker") for worker in self.definition.workers),
        ]
        if self.sweeper is not None:
            self._tasks.append(asyncio.create_task(self.sweeper.run(), name=f"{name}-deadlines"))
        if self.settings.retention.enabled:
            self._tasks.append(asyncio.create_task(self.pruner.run(), name=f"{name}-retention"))
        self._started = True
        log.info("service started", consumes=[t.name for t in self.definition.consumes])

    async def _retrying(self, what: str, step: Callable[[], Awaitable[T]]) -> T:
        backoff = Backoff(first=0.2, cap=5.0)
        while True:
            try:
                return await step()
            except (KafkaError, *SYSTEM_ERRORS) as error:
                self._startup_errors.warning(f"{what} failed; will retry", error=repr(error))
                await backoff.wait()

    async def stop(self) -> None:
        """Stop in order; see the module docstring. Safe on a service whose start was cut short."""
        began = time.monotonic()
        self.readiness.set(assigned=False)
        await self.subscriber.stop(grace=STOP_GRACE_SECONDS, bound=STOP_STEP_SECONDS)
        self.readiness.set(assigned=False)  # a rebalance during the stop may have assigned it again
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=STOP_STEP_SECONDS)
        for task in self._tasks:  # a task's failure was logged where it happened; retrieved so it is not again
            if task.done() and not task.cancelled():
                task.exception()
        if self._started:
            # What is committed but unpublished goes out before the producer closes; what does
            # not in time stays in the outbox table, which the next start publishes first.
            await self._bounded("flushing the outbox", self._flush_outbox())
        await self._bounded("closing the producer", self.producer.stop())
        if self.http is not None:
            await self._bounded("closing the http endpoint", self.http.stop())
        await self._bounded("closing the database", self.database.close())
        await self._bounded("closing the database engine", self.engine.dispose())
        log.info("service stopped", seconds=round(time.monotonic() - began, 3))

    async def _flush_outbox(self) -> None:
        await self.relay.publish_pending()
        await self.relay.delete_published()

    @staticmethod
    async def _bounded(what: str, step: Awaitable[object], seconds: float = STOP_STEP_SECONDS) -> None:
        try:
            await asyncio.wait_for(step, timeout=seconds)
        except TimeoutError:
            log.warning(f"stopping: {what} took longer than {seconds:g}s; left undone")
        except Exception as error:  # the stop goes on: what is left undone is redone at the next start
            log.warning(f"stopping: {what} failed", error=repr(error))

    async def serve(self) -> None:
        """Start, run until SIGINT or SIGTERM, stop; see the module docstring."""
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        signals = StopSignals()

        def on_signal(signum: signal.Signals) -> None:
            self.readiness.set(assigned=False)
            meaning = signals.meaning(signum, time.monotonic())
            if meaning == "exit":
                log.warning("second signal while stopping; exiting at once", signal=signum.name)
                os._exit(128 + signum)
            if meaning == "stop":
                log.info("stopping", signal=signum.name)
                stopping.set()

        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, on_signal, signum)
        # A signal during the start (a broker not there yet: it retries forever) stops it too.
        starting = asyncio.create_task(self.start(), name=f"{self.definition.name}-start")
        signalled = asyncio.create_task(stopping.wait(), name=f"{self.definition.name}-signals")
        try:
            await asyncio.wait({starting, signalled}, return_when=asyncio.FIRST_COMPLETED)
            if not starting.done():
                starting.cancel()
                await asyncio.wait({starting}, timeout=STOP_STEP_SECONDS)
            elif starting.exception() is None:
                await signalled
            else:
                starting.result()  # the start failed: raised after the stop below
        finally:
            signalled.cancel()
            await self.stop()


def run(definition: ServiceDefinition, settings: ServiceSettings) -> None:
    """Process entry point used by each service's ``__main__``."""
    configure_logging(definition.name, settings.log_level, settings.log_format)

    async def serve() -> None:  # the Kafka clients must be created on the running loop
        await Service(definition, settings).serve()

    traces = tracing.configure(definition.name)  # X5: recorded where TRADEGUARD_TRACES_DIR says
    try:
        # The process signs as this service only: it reads no other principal's private key.
        install(load_keyring(signing_dir_from_environment(), principals=(definition.name,)))
        asyncio.run(serve())
    except SigningNotConfiguredError as error:
        log.error("cannot start without the stack's signing keyring", error=str(error))  # noqa: TRY400 - the reason says it all
        raise SystemExit(f"{definition.name}: {error}") from None
    finally:
        if traces is not None:
            traces.shutdown()  # the last spans reach their file
        # Everything is closed: spare the exit the interpreter's last full collection, seconds
        # over a heap of this size that free nothing the process's end would not.
        gc.freeze()
