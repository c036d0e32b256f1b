"""How every service consumes: batches of records, one database transaction per batch.

For each batch the consumer
1. decodes every record (a record that is not a valid envelope of a known
   message goes to the dead-letter topic with the reason and its original bytes);
2. skips messages the inbox says were already handled;
3. calls the handler registered for each message type, which changes state and
   emits new messages into the outbox;
4. records the handled ids in the inbox and commits, all in one transaction;
5. hands the stored outgoing records to the outbox relay. The Kafka offset is committed by the subscriber only
   after this returns, so a crash anywhere redelivers rather than loses.

A handler that raises (other than :class:`CommandRefused`) makes the batch roll
back and run again with each message in its own savepoint, so one bad message
is retried ``attempts`` times and then dead-lettered while the rest go through.
Database outages are not a message's fault: they propagate, the batch is
redelivered and nothing is dead-lettered.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from pydantic import ValidationError
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from contracts import CommandRejected, Message, RawEnvelope, UnknownMessageType, parse_envelope, payload_model
from contracts.envelope import envelope_for
from contracts.topics import (
    DEAD_LETTER,
    DEAD_LETTER_CONSUMER,
    DEAD_LETTER_REASON,
    DEAD_LETTER_SOURCE,
    MESSAGE_TYPE_HEADER,
    Topic,
)
from shared import inbox
from shared.errors import CommandRefused
from shared.logging import get_logger, message_context
from shared.outbox import OutgoingRecord, StoredRecord, store_records

log = get_logger(__name__)

M = TypeVar("M", bound=Message)
INFRASTRUCTURE_ERRORS = (OperationalError, InterfaceError, ConnectionError, TimeoutError)


class ConsumedRecord(Protocol):
    """The parts of a Kafka consumer record we use (aiokafka's ConsumerRecord fits)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...


@dataclass(slots=True)
class HandlerContext:
    """What a handler gets besides its message: the transaction and a way to emit messages."""

    connection: AsyncConnection
    envelope: RawEnvelope
    source: str
    emitted: list[OutgoingRecord] = field(default_factory=list)

    @property
    def correlation_id(self) -> str:
        return self.envelope.correlation_id

    def emit(self, message: Message, *, idempotency_key: str | None = None, topic: Topic | None = None) -> None:
        """Queue a message caused by the one being handled; it is published after commit."""
        self.emitted.append(
            outgoing(
                message,
                source=self.source,
                correlation_id=self.envelope.correlation_id,
                causation_id=self.envelope.message_id,
                idempotency_key=idempotency_key or f"{self.envelope.message_id}:{message.message_type}",
                topic=topic,
            )
        )


def outgoing(
    message: Message,
    *,
    source: str,
    correlation_id: str,
    idempotency_key: str,
    causation_id: uuid.UUID | None = None,
    topic: Topic | None = None,
) -> OutgoingRecord:
    """The Kafka record for a message: its envelope as JSON, keyed and typed."""
    envelope = envelope_for(
        message,
        correlation_id=correlation_id,
        causation_id=causation_id,
        idempotency_key=idempotency_key,
        source=source,
    )
    return OutgoingRecord(
        topic=(topic or message.topic).name,
        key=message.partition_key,
        value=envelope.model_dump_json().encode(),
        headers={MESSAGE_TYPE_HEADER: message.message_type},
    )


Handler = Callable[[M, HandlerContext], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class _Route(Generic[M]):
    model: type[M]
    handler: Handler[M]


class MessageHandlers:
    """Which function handles which message type, for one service."""

    def __init__(self) -> None:
        self._routes: dict[str, _Route[Any]] = {}

    def on(self, model: type[M]) -> Callable[[Handler[M]], Handler[M]]:
        """Register the decorated function as the handler of ``model``."""

        def register(handler: Handler[M]) -> Handler[M]:
            if model.message_type in self._routes:
                msg = f"{model.message_type} already has a handler"
                raise ValueError(msg)
            self._routes[model.message_type] = _Route(model, handler)
            return handler

        return register

    def route(self, message_type: str) -> _Route[Any] | None:
        return self._routes.get(message_type)

    @property
    def message_types(self) -> frozenset[str]:
        return frozenset(self._routes)


@dataclass(slots=True)
class _Delivery:
    record: ConsumedRecord
    envelope: RawEnvelope | None = None
    message: Message | None = None
    route: _Route[Any] | None = None
    poison_reason: str | None = None


class _HandlerFailed(Exception):
    """A handler raised during a batch run without savepoints: rerun isolated."""


class BatchConsumer:
    """Applies batches of records to one service's database; see the module docstring."""

    def __init__(
        self,
        *,
        name: str,
        engine: AsyncEngine,
        handlers: MessageHandlers,
        rejections_topic: Topic,
        hand_over: Callable[[list[StoredRecord]], None],
        attempts: int = 3,
    ) -> None:
        self.name = name
        self._engine = engine
        self._handlers = handlers
        self._rejections_topic = rejections_topic
        self._hand_over = hand_over
        self._attempts = attempts

    async def consume(self, records: Sequence[ConsumedRecord]) -> None:
        deliveries = [d for d in map(self._decode, records) if d is not None]
        if not deliveries:
            return
        try:
            stored = await self._apply(deliveries, isolate=False)
        except _HandlerFailed:
            stored = await self._apply(deliveries, isolate=True)
        if stored:
            self._hand_over(stored)

    def _decode(self, record: ConsumedRecord) -> _Delivery | None:
        """Parse a record; None when it is a message this service does not handle."""
        type_header = next((v for k, v in record.headers if k == MESSAGE_TYPE_HEADER), None)
        if type_header is not None and type_header.decode(errors="replace") not in self._handlers.message_types:
            try:
                payload_model(type_header.decode(), 1)
            except UnknownMessageType:
                pass  # fall through: parsing will name the problem
            else:
                return None
        delivery = _Delivery(record)
        try:
            delivery.envelope = parse_envelope(record.value or b"")
            model = payload_model(delivery.envelope.type, delivery.envelope.version)
            delivery.route = self._handlers.route(model.message_type)
            if delivery.route is None:
                return None
            delivery.message = delivery.route.model.model_validate(delivery.envelope.payload)
        except (ValidationError, UnknownMessageType, ValueError) as error:
            delivery.poison_reason = _describe(error)
        return delivery

    async def _apply(self, deliveries: list[_Delivery], *, isolate: bool) -> list[StoredRecord]:
        async with self._engine.begin() as connection:
            ids = {str(d.envelope.message_id) for d in deliveries if d.envelope is not None}
            seen = await inbox.already_handled(connection, ids)
            handled: list[tuple[str, str]] = []
            out: list[OutgoingRecord] = []
            for delivery in deliveries:
                if delivery.poison_reason is not None:
                    out.append(self._dead_letter(delivery.record, delivery.poison_reason))
                    continue
                assert delivery.envelope is not None
                message_id = str(delivery.envelope.message_id)
                if message_id in seen:
                    log.info("duplicate message skipped", message_id=message_id, type=delivery.envelope.type)
                    continue
                seen.add(message_id)
                out.extend(await self._handle(connection, delivery, isolate=isolate))
                handled.append((message_id, delivery.envelope.type))
            await inbox.record_handled(connection, handled)
            return await store_records(connection, out)

    async def _handle(self, connection: AsyncConnection, delivery: _Delivery, *, isolate: bool) -> list[OutgoingRecord]:
        assert delivery.envelope is not None
        assert delivery.message is not None
        assert delivery.route is not None
        envelope = delivery.envelope
        with message_context(envelope.correlation_id, str(envelope.message_id), envelope.type):
            if not isolate:
                context = HandlerContext(connection, envelope, self.name)
                try:
                    await self._call(delivery, context)
                except INFRASTRUCTURE_ERRORS:
                    raise
                except Exception as error:
                    raise _HandlerFailed from error
                return context.emitted
            return await self._handle_isolated(connection, delivery)

    async def _handle_isolated(self, connection: AsyncConnection, delivery: _Delivery) -> list[OutgoingRecord]:
        error: Exception | None = None
        for attempt in range(1, self._attempts + 1):
            context = HandlerContext(connection, delivery.envelope, self.name)  # type: ignore[arg-type]
            try:
                async with connection.begin_nested():
                    await self._call(delivery, context)
            except INFRASTRUCTURE_ERRORS:
                raise
            except Exception as caught:
                error = caught
                log.warning("handler failed", attempt=attempt, of=self._attempts, error=repr(caught))
            else:
                return context.emitted
        reason = f"handler failed {self._attempts} times: {_describe(error)}"
        log.error("message dead-lettered", reason=reason)
        return [self._dead_letter(delivery.record, reason)]

    async def _call(self, delivery: _Delivery, context: HandlerContext) -> None:
        assert delivery.route is not None
        try:
            await delivery.route.handler(delivery.message, context)
        except CommandRefused as refusal:
            log.info("command refused", code=refusal.code, reason=refusal.reason)
            context.emitted.clear()
            context.emit(self._rejection(context.envelope, delivery.message, refusal), topic=self._rejections_topic)

    @staticmethod
    def _rejection(envelope: RawEnvelope, message: Message | None, refusal: CommandRefused) -> CommandRejected:
        return CommandRejected(
            subject_id=message.partition_key if message is not None else envelope.correlation_id,
            rejected_message_id=envelope.message_id,
            rejected_type=envelope.type,
            code=refusal.code,
            reason=refusal.reason,
        )

    def _dead_letter(self, record: ConsumedRecord, reason: str) -> OutgoingRecord:
        log.warning("record sent to dead-letter topic", topic=record.topic, offset=record.offset, reason=reason)
        return OutgoingRecord(
            topic=DEAD_LETTER.name,
            key=record.key.decode(errors="replace") if record.key is not None else None,
            value=record.value or b"",
            headers={
                DEAD_LETTER_REASON: reason[:2000],
                DEAD_LETTER_SOURCE: f"{record.topic}/{record.partition}/{record.offset}",
                DEAD_LETTER_CONSUMER: self.name,
            },
        )


def _describe(error: BaseException | None) -> str:
    if isinstance(error, ValidationError):
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in error.errors()[:10]
        )
        return f"invalid message ({error.error_count()} problem(s)): {problems}"
    return f"{type(error).__name__}: {error}"
