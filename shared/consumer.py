"""How every service consumes: batches of records, read once, decided in memory, written once.

For each batch the consumer

1. decodes every record from its raw bytes (:func:`decode_record`): a verdict for any
   bytes in any key, header or value;
2. skips messages the inbox says were already handled, and answers a repeat of a *keyed*
   command (same idempotency key, new message id) with its first outcome
   (:mod:`shared.idempotency`);
3. loads every aggregate the batch's handlers declared, one query per table
   (:mod:`shared.unit_of_work`);
4. runs each handler on the objects in memory, in message order, each in its own
   :class:`~shared.unit_of_work.MessageScope`;
5. writes the changed aggregates back (one upsert per table, versions checked), records
   the handled ids in the inbox, stores the outgoing records in the outbox and the batch's
   next offsets in ``consumer_offsets``, all in one transaction, then hands the stored
   records to the outbox relay and runs the handlers' after-commit effects (an SMS). Kafka
   offsets are committed, as a copy, only after this returns (:mod:`shared.offsets`).

Every failure has exactly one class, decided here and nowhere else:

=====================  =======================================  ==========================================
class                  what it is                               what happens
=====================  =======================================  ==========================================
(a) the record's       cannot be decoded: empty or oversized    dead-lettered at once with the reason
fault                  value, key or ``tg-type`` header not     (class ``record``); no retry; the batch
                       UTF-8 (or the header twice), not JSON,   goes on without it; a signature's
                       not an envelope, unknown type or         refusal is also counted by reason
                       version, invalid payload, a type that    (``tradeguard_signatures_refused``)
                       belongs on another topic, record key
                       not the subject; or not trusted: no
                       signature, an unknown signer or key, a
                       bad signature, a signer the catalogue
                       does not let send the type
                       (:mod:`shared.signing`); or replayed:
                       a command of the marketplace or the
                       operators that reached the broker more
                       than ``REPLAY_WINDOW`` after it was
                       signed (counted as ``stale``)
(b) the command's      a business rule refuses it               ``CommandRejected`` on the service's
fault                  (:class:`~shared.errors.CommandRefused`) events topic; none of the handler's
                                                                writes survive (its scope is discarded)
(c) a conflict         a version changed since the batch read   the batch is rolled back and re-run on
                       it (:class:`VersionConflict`)            fresh state, up to ``conflict_attempts``
                                                                times; never dead-lettered for it
(d) the system's       database busy, down or timing out;       :class:`SystemFault` is raised: the
fault                  broker unavailable                       subscriber retries the batch with backoff
                                                                and jitter, forever, never dead-letters
                                                                it, and reports not-ready meanwhile
(e) a bug              any other exception, in a handler or     retried ``attempts`` times in isolation,
                       while writing one message's effects      then dead-lettered (class ``bug``) with
                                                                the exception and the traceback's last
                                                                frame; the others go through
=====================  =======================================  ==========================================

Records are trusted only from their owner (SPEC X9): :func:`outgoing` signs every record it
makes as its source's principal (one MAC per consumer of its topic), and a record this service
handles is verified, by the MAC made for this service, after the route lookup (so what it skips
costs nothing) and before any handler runs. A dead letter keeps the original record's headers,
MACs included, and is not signed again: re-driven, it verifies as the original did.

A dead-lettered message is *not* recorded in the inbox, so once the cause is fixed it can be
re-driven (``tradeguard dead-letters redrive``) and then takes effect exactly once.
"""

from __future__ import annotations

import math
import sqlite3
import time
import traceback
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

from aiokafka import TopicPartition
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts import Actor, CommandRejected, Envelope, InvalidMessage, Message, decode_message, payload_model
from contracts.catalogue import REJECTIONS
from contracts.envelope import envelope_for, new_message_id
from contracts.topics import (
    DEAD_LETTER,
    DEAD_LETTER_AT,
    DEAD_LETTER_CLASS,
    DEAD_LETTER_CONSUMER,
    DEAD_LETTER_REASON,
    DEAD_LETTER_SOURCE,
    MESSAGE_TYPE_HEADER,
    Topic,
)
from shared import idempotency, inbox, tracing
from shared.aggregates import Aggregate, Journal, Key, Load, Row
from shared.clock import SYSTEM_CLOCK, Clock
from shared.consent import check_consent
from shared.crash import crash_if_asked
from shared.errors import CommandRefused, SystemFault
from shared.logging import get_logger, message_context
from shared.observability import METRICS
from shared.offsets import next_offsets, offset_rows, stored_offsets
from shared.outbox import OutgoingRecord, StoredRecord, store_records
from shared.signing import PRINCIPALS, Keyring, SignatureRefused, Verifier, process_keyring
from shared.sql import Database, Transaction, open_database
from shared.unit_of_work import BatchUnitOfWork, MessageScope, VersionConflict, normalize_key

log = get_logger(__name__)

M = TypeVar("M", bound=Message)
A = TypeVar("A")

# Class (d): failures of the database or the network, never of a message.
SYSTEM_ERRORS: tuple[type[BaseException], ...] = (
    OperationalError,
    sqlite3.OperationalError,  # "database is locked" on the raw SQLite path (shared.sql)
    InterfaceError,
    ConnectionError,
    TimeoutError,
    OSError,
)
# SQLSTATE classes that are the database's state, never a message's: connection exceptions,
# insufficient resources, operator intervention (shutdown, cannot connect now, statement
# timeout), object not in prerequisite state (lock timeout, database not accepting connections).
_SYSTEM_SQLSTATE_CLASSES = frozenset({"08", "53", "55", "57"})


def is_system_failure(error: BaseException) -> bool:
    """Class (d): the database or the network failed, whatever message was being handled."""
    if isinstance(error, SYSTEM_ERRORS):
        return True
    if isinstance(error, DBAPIError):
        sqlstate = getattr(error.orig, "sqlstate", None) or getattr(error.orig, "pgcode", None)
        return error.connection_invalidated or (isinstance(sqlstate, str) and sqlstate[:2] in _SYSTEM_SQLSTATE_CLASSES)
    return False


MAX_RECORD_BYTES = 1024 * 1024
"""Largest record value a service reads; a larger one is the record's fault."""


class ConsumedRecord(Protocol):
    """The parts of a Kafka consumer record we use (aiokafka's ConsumerRecord fits)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def timestamp_type(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...


class HandlerContext:
    """What a handler gets besides its message: the batch's aggregates and a way to emit."""

    __slots__ = ("deps", "effects", "emitted", "envelope", "now", "rejections_topic", "scope", "source")

    def __init__(
        self,
        envelope: Envelope[Any],
        source: str,
        scope: MessageScope,
        clock: Clock,
        *,
        deps: Any = None,
        rejections_topic: Topic | None = None,
    ) -> None:
        self.envelope = envelope
        self.rejections_topic = rejections_topic
        self.source = source
        self.scope = scope
        self.now = clock.now()
        self.deps = deps
        """The service's own ports (a password hasher, an SMS gateway): see ServiceDefinition.dependencies."""
        self.emitted: list[OutgoingRecord] = []
        self.effects: list[Callable[[], None]] = []

    @property
    def correlation_id(self) -> str:
        return self.envelope.correlation_id

    def get(self, aggregate: Aggregate[A], key: Key) -> A | None:
        """A declared aggregate, or None when it does not exist yet."""
        return self.scope.get(aggregate, key)

    def read(self, load: Load[A], message: Message) -> A | None:
        """What a ``loads=`` declaration names for this message (its key computed the same way)."""
        return self.scope.get(load.aggregate, load.key(message, self.envelope))

    def add(self, aggregate: Aggregate[A], item: A) -> A:
        """A new aggregate, stored with the batch."""
        return self.scope.add(aggregate, item)

    def append(self, journal: Journal, row: Row) -> None:
        """A row for an append-only table, stored with the batch."""
        self.scope.append(journal, row)

    def emit(self, message: Message, *, idempotency_key: str | None = None, topic: Topic | None = None) -> str:
        """Queue a message caused by the one being handled; it is published after commit. Its
        message id, for a handler that will only trust answers caused by it."""
        message_id = new_message_id()
        self.emitted.append(
            outgoing(
                message,
                source=self.source,
                correlation_id=self.envelope.correlation_id,
                causation_id=self.envelope.message_id,
                idempotency_key=idempotency_key or f"{self.envelope.message_id}:{message.message_type}",
                topic=topic,
                occurred_at=self.now,
                message_id=message_id,
            )
        )
        return str(message_id)

    def refuse_keeping_changes(self, refusal: CommandRefused) -> None:
        """Answer the command with a CommandRejected, like raising ``refusal``, but keep what
        handling it changed: a wrong password is refused *and* counted as a failed check."""
        if self.rejections_topic is None:
            raise RuntimeError("this context has no rejections topic")
        self.emitted.append(
            rejection(self.envelope, refusal, source=self.source, topic=self.rejections_topic, now=self.now)
        )

    def after_commit(self, effect: Callable[[], None]) -> None:
        """Run ``effect`` once the batch is committed (an SMS to send); never for a refused or
        re-run message. At most once: a crash right after the commit loses it, so an effect
        must be one the user can ask again for (a new code)."""
        self.effects.append(effect)


def outgoing(
    message: Message,
    *,
    source: str,
    correlation_id: str,
    idempotency_key: str,
    causation_id: uuid.UUID | None = None,
    topic: Topic | None = None,
    occurred_at: datetime | None = None,
    signer: str | None = None,
    keyring: Keyring | None = None,
    message_id: uuid.UUID | None = None,
    actor: Actor | None = None,
) -> OutgoingRecord:
    """The Kafka record for a message: its envelope as JSON, keyed, typed and signed as
    ``signer`` (default: ``source``, a service's own principal) with ``keyring`` (default: the
    process's, :func:`shared.signing.process_keyring`); ``actor``: whom a marketplace acts for."""
    envelope = envelope_for(
        message,
        correlation_id=correlation_id,
        causation_id=causation_id,
        idempotency_key=idempotency_key,
        source=source,
        occurred_at=occurred_at,
        message_id=message_id,
        actor=actor,
    )
    key = message.partition_key.encode()
    value = envelope.model_dump_json().encode()
    kind = message.message_type.encode()
    name = (topic or message.topic).name
    signature = (keyring or process_keyring()).sign(signer or source, name, key, kind, value)
    return OutgoingRecord(
        topic=name,
        key=key,
        value=value,
        headers=((MESSAGE_TYPE_HEADER, kind), *signature, *tracing.traceparent()),
    )


Handler = Callable[[M, HandlerContext], None]


@dataclass(frozen=True, slots=True)
class Route(Generic[M]):
    model: type[M]
    handler: Handler[M]
    loads: tuple[Load[Any], ...]
    keyed: bool = False


class MessageHandlers:
    """Which function handles which message type, and what it reads, for one service."""

    def __init__(self) -> None:
        self._routes: dict[str, Route[Any]] = {}

    def on(
        self, model: type[M], *, loads: Sequence[Load[Any]] = (), keyed: bool = False
    ) -> Callable[[Handler[M]], Handler[M]]:
        """Register the decorated function as the handler of ``model``; ``loads`` names every
        aggregate it reads, so the batch can read them all at once. ``keyed``: a repeat with the
        same idempotency key gets the first outcome again (shared.idempotency); for commands
        whose own state does not already make repeats harmless."""

        def register(handler: Handler[M]) -> Handler[M]:
            if model.message_type in self._routes:
                raise ValueError(f"{model.message_type} already has a handler")
            self._routes[model.message_type] = Route(model, handler, tuple(loads), keyed)
            return handler

        return register

    def route(self, message_type: str) -> Route[Any] | None:
        return self._routes.get(message_type)

    @property
    def message_types(self) -> frozenset[str]:
        return frozenset(self._routes)


# ---------------------------------------------------------------------- decoding


@dataclass(slots=True)
class Delivery:
    """One record and the verdict on it: a message to handle, or the reason it is poison."""

    record: ConsumedRecord
    envelope: Envelope[Any] | None = None
    route: Route[Any] | None = None
    poison: str | None = None

    @property
    def message_id(self) -> str:
        assert self.envelope is not None
        return str(self.envelope.message_id)


def _belongs_elsewhere(name: str, topic: str) -> bool | None:
    """None for a type no contract defines; else whether its contract puts it on another topic."""
    try:
        model = payload_model(name, 1)
    except InvalidMessage:
        return None
    if model is CommandRejected:  # each service's rejections go to its own events topic
        return not topic.endswith(".events")
    return model.topic.name != topic


class _Poison(Exception):  # internal flow control: carries the record's verdict
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def decode_record(record: ConsumedRecord, handlers: MessageHandlers, verifier: Verifier) -> Delivery | None:
    """The verdict on one record; None when it is a message this service does not handle.
    ``verifier``: the consuming principal's (:meth:`shared.signing.Keyring.verifier`), which
    checks the MAC made for it.

    Total: whatever the record holds, the answer is a Delivery (possibly poison) or None.
    """
    try:
        return _decode(record, handlers, verifier)
    except _Poison as poison:
        return Delivery(record, poison=poison.reason)


def _decode(record: ConsumedRecord, handlers: MessageHandlers, verifier: Verifier) -> Delivery | None:
    header_type = _type_header(record)
    if header_type is not None:
        elsewhere = _belongs_elsewhere(header_type, record.topic)
        if elsewhere:
            raise _Poison(f"a {header_type[:100]} does not belong on {record.topic}")
        if elsewhere is False and header_type not in handlers.message_types:
            return None  # a message of this topic that this service does not handle: not parsed at all
    envelope = _envelope(record)
    if header_type is not None and header_type != envelope.type:
        raise _Poison(f"header {MESSAGE_TYPE_HEADER} says {header_type!r}, the envelope {envelope.type!r}")
    if _belongs_elsewhere(envelope.type, record.topic):
        raise _Poison(f"a {envelope.type} does not belong on {record.topic}")
    route = handlers.route(envelope.type)
    if route is None:
        return None
    _check_key(record, envelope)
    signer = _check_signature(record, envelope, verifier)
    _check_fresh(record, envelope, signer)
    return Delivery(record, envelope=envelope, route=route)


def _type_header(record: ConsumedRecord) -> str | None:
    values = [value for key, value in record.headers if key == MESSAGE_TYPE_HEADER]
    if len(values) > 1:
        raise _Poison(f"header {MESSAGE_TYPE_HEADER} appears {len(values)} times")
    if not values:
        return None
    try:
        return values[0].decode()
    except UnicodeDecodeError:
        raise _Poison(f"header {MESSAGE_TYPE_HEADER} is not valid UTF-8") from None


def _envelope(record: ConsumedRecord) -> Envelope[Any]:
    value = record.value
    if not value:
        raise _Poison("the record has no value")
    if len(value) > MAX_RECORD_BYTES:
        raise _Poison(f"value of {len(value):,} bytes exceeds the {MAX_RECORD_BYTES:,}-byte limit")
    try:
        return decode_message(value)
    except InvalidMessage as invalid:
        raise _Poison(invalid.reason) from None


def _check_key(record: ConsumedRecord, envelope: Envelope[Any]) -> None:
    """The record key must be the message's subject, or its ordering would be lost."""
    subject = envelope.payload.partition_key
    if record.key is None or record.key != subject.encode():
        shown = "none" if record.key is None else repr(record.key[:120].decode(errors="replace"))
        raise _Poison(f"record key {shown} is not the message's {envelope.payload.topic.key.value} {subject!r}")


def _check_signature(record: ConsumedRecord, envelope: Envelope[Any], verifier: Verifier) -> str:
    """Made by a principal the catalogue lets send this type, and unchanged since (SPEC X9);
    returns that principal."""
    try:
        return verifier.check(
            record.headers, message_type=envelope.type, topic=record.topic, key=record.key, value=record.value or b""
        )
    except SignatureRefused as refused:
        METRICS.signatures_refused.labels(refused.code).inc()
        raise _Poison(refused.reason) from None


REPLAY_WINDOW_MS = 5 * 60 * 1000
"""How long after it was signed a command from outside the services may reach the broker."""
LOG_APPEND_TIME = 1  # Kafka's timestamp type: stamped by the broker on arrival
_OUTSIDE_PRINCIPALS = frozenset(PRINCIPALS) - frozenset(REJECTIONS)  # the marketplace, the operators


def _check_fresh(record: ConsumedRecord, envelope: Envelope[Any], signer: str) -> None:
    """A marketplace or operator command must reach the broker within the window of its signed
    ``occurred_at`` (either way: a clock ahead must not stretch it). A copy captured and sent
    again later carries its old stamp under a new arrival time, and is refused here.

    Measured against the broker's arrival stamp (command topics are LogAppendTime), not against
    this service's clock: a consumer catching up after a pause, or a clock moved by a scenario
    (X8), makes no command stale. The services' own records are not checked: an outbox may
    publish long after it committed, and their signatures already bind them to their producer.
    """
    if signer not in _OUTSIDE_PRINCIPALS or record.timestamp_type != LOG_APPEND_TIME:
        return
    signed_ms = int(envelope.occurred_at.timestamp() * 1000)
    late_ms = record.timestamp - signed_ms
    if abs(late_ms) > REPLAY_WINDOW_MS:
        METRICS.signatures_refused.labels("stale").inc()
        when = "after" if late_ms > 0 else "before"
        raise _Poison(
            f"stale: signed at {envelope.occurred_at.isoformat()}, reached the broker {abs(late_ms) / 1000:.0f} s "
            f"{when} that (the window is {REPLAY_WINDOW_MS // 1000} s): a replayed or delayed command; "
            "send it again, with the same idempotency key"
        )


# ---------------------------------------------------------------------- consuming


@dataclass(slots=True)
class _Outcome:
    """What one pass over a batch produced, before it is stored."""

    records: list[OutgoingRecord] = field(default_factory=list)
    handled: list[tuple[str, str]] = field(default_factory=list)
    effects: list[Callable[[], None]] = field(default_factory=list)
    keyed: list[tuple[str, str, list[OutgoingRecord]]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))


class _BatchFailed(Exception):
    """A message's effects could not be written with the batch: re-run each in isolation."""


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
        conflict_attempts: int = 5,
        clock: Clock = SYSTEM_CLOCK,
        database: Database | None = None,
        dependencies: Any = None,
        verifier: Verifier | None = None,
    ) -> None:
        self.name = name
        # The MACs made for this service (its name is its principal); no keyring: this fails here, at start.
        self._verifier = verifier or process_keyring().verifier(name)
        self._dependencies = dependencies
        self._database = database or open_database(engine)
        self._handlers = handlers
        self._rejections_topic = rejections_topic
        self._hand_over = hand_over
        self._attempts = attempts
        self._conflict_attempts = conflict_attempts
        self._clock = clock
        # The Kafka cluster consumed from (set once the service has asked the broker): offsets
        # are stored with the effects under it. None stores none (a consumer without a broker).
        self.cluster_id: str | None = None
        self._skipped: dict[TopicPartition, int] = {}  # batches with nothing of ours: stored with the next
        self.last_batch_at = -math.inf  # time.monotonic() of the last batch: the pruner yields while they come

    async def stored_offsets(self) -> dict[TopicPartition, int]:
        """Where this database says each partition's consumption stands (shared.offsets)."""
        return {} if self.cluster_id is None else await stored_offsets(self._database, self.cluster_id)

    async def anchor_offsets(self, positions: dict[TopicPartition, int]) -> None:
        """Store where partitions the database holds no offset for start (never moving one back)."""
        if self.cluster_id is None or not positions:
            return
        async with self._database.transaction() as tx:
            await tx.advance_offsets(offset_rows(positions, self.cluster_id, self._clock.now()))

    async def consume(self, records: Sequence[ConsumedRecord]) -> None:
        """Apply a batch. Raises :class:`SystemFault` when the database (or the network) is
        the problem: nothing was stored and the same batch should be offered again."""
        started = time.perf_counter()
        self.last_batch_at = time.monotonic()
        deliveries = [d for r in records if (d := decode_record(r, self._handlers, self._verifier)) is not None]
        METRICS.messages.labels("skipped").inc(len(records) - len(deliveries))
        METRICS.stage("decode", time.perf_counter() - started)
        positions = next_offsets(records)
        if not deliveries:  # nothing of this service's: its offsets go with the next batch that is
            for partition, offset in positions.items():
                self._skipped[partition] = max(self._skipped.get(partition, 0), offset)
            return
        positions = {**self._skipped, **positions}  # a partition in both: the batch's offset is the later
        try:
            stored, effects = await self._apply_with_conflict_retries(deliveries, positions)
        except Exception as error:
            if is_system_failure(error):
                raise SystemFault(f"{type(error).__name__}: {getattr(error, 'orig', None) or error}") from error
            raise
        self._skipped.clear()
        committed_ms = time.time() * 1000
        for delivery in deliveries:  # broker timestamp to effects committed: the hop as a client sees it
            METRICS.end_to_end.observe(max(0.0, committed_ms - delivery.record.timestamp) / 1000)
        if stored:
            self._hand_over(stored)
        for effect in effects:
            try:
                effect()
            except Exception as error:  # the batch is committed: an effect's failure must not re-run it
                log.error("after-commit effect failed", error=repr(error))  # noqa: TRY400 - no traceback: locals may hold secrets

    async def _apply_with_conflict_retries(
        self, deliveries: list[Delivery], positions: dict[TopicPartition, int]
    ) -> tuple[list[StoredRecord], list[Callable[[], None]]]:
        for attempt in range(1, self._conflict_attempts + 1):
            try:
                try:
                    return await self._apply(deliveries, positions, isolate=False)
                except _BatchFailed:
                    return await self._apply(deliveries, positions, isolate=True)
            except VersionConflict as conflict:
                METRICS.messages.labels("conflict_retry").inc(len(deliveries))
                log.info("version conflict; re-running the batch", attempt=attempt, conflict=str(conflict))
        raise SystemFault(f"the batch still conflicted after {self._conflict_attempts} runs")

    async def _apply(
        self, deliveries: list[Delivery], positions: dict[TopicPartition, int], *, isolate: bool
    ) -> tuple[list[StoredRecord], list[Callable[[], None]]]:
        async with self._database.transaction() as tx:
            fresh, outcome = await self._split_duplicates(tx, deliveries)
            if isolate:
                await self._run_isolated(tx, fresh, outcome)
            else:
                await self._run_together(tx, fresh, outcome)
            started = time.perf_counter()
            await inbox.record_handled(tx, outcome.handled, self._clock.now())
            await idempotency.record_outcomes(tx, outcome.keyed, self._clock.now())
            stored = await store_records(tx, outcome.records, self._clock.now())
            if self.cluster_id is not None:
                await tx.advance_offsets(offset_rows(positions, self.cluster_id, self._clock.now()))
            crash_if_asked(self.name, "before_store", (d.envelope.type for d in deliveries if d.envelope is not None))
        crash_if_asked(self.name, "after_store", (d.envelope.type for d in deliveries if d.envelope is not None))
        METRICS.stage("store", time.perf_counter() - started)
        for outcome_name, count in outcome.counts.items():
            METRICS.messages.labels(outcome_name).inc(count)
        return stored, outcome.effects

    async def _split_duplicates(self, tx: Transaction, deliveries: list[Delivery]) -> tuple[list[Delivery], _Outcome]:
        """Dead-letter poison at once and drop what the inbox has seen; the rest is fresh."""
        outcome = _Outcome()
        ids = {d.message_id for d in deliveries if d.poison is None}
        seen = await inbox.already_handled(tx, ids)
        fresh: list[Delivery] = []
        for delivery in deliveries:
            if delivery.poison is not None:
                outcome.records.append(self._dead_letter(delivery.record, "record", delivery.poison))
                outcome.counts["dead_lettered"] += 1
            elif delivery.message_id in seen:
                outcome.counts["duplicate"] += 1
                log.debug("duplicate message skipped", message_id=delivery.message_id)
            else:
                seen.add(delivery.message_id)
                fresh.append(delivery)
        return await self._split_repeats(tx, fresh, outcome), outcome

    async def _split_repeats(self, tx: Transaction, deliveries: list[Delivery], outcome: _Outcome) -> list[Delivery]:
        """Answer repeats of keyed commands with their first outcome; the rest is fresh."""
        keyed = [d for d in deliveries if d.route is not None and d.route.keyed]
        if not keyed:
            return deliveries
        keys = {d.message_id: idempotency.scoped_key(d.envelope) for d in keyed if d.envelope is not None}
        first = await idempotency.first_outcomes(tx, set(keys.values()))
        claimed: dict[str, str] = {}
        fresh: list[Delivery] = []
        for delivery in deliveries:
            key = keys.get(delivery.message_id)
            if key is None:
                fresh.append(delivery)
                continue
            assert delivery.envelope is not None
            digest = idempotency.fingerprint(delivery.envelope)
            earlier = first[key].fingerprint if key in first else claimed.get(key)
            if earlier is None:
                claimed[key] = digest
                fresh.append(delivery)
                continue
            outcome.handled.append((delivery.message_id, delivery.envelope.type))
            if earlier != digest:
                refusal = CommandRefused(
                    "idempotency_conflict",
                    f"idempotency key {delivery.envelope.idempotency_key!r} was used for a different "
                    f"{delivery.envelope.type}; use a new key for a new intent",
                )
                outcome.records.append(self._rejection(delivery.envelope, refusal))
                outcome.counts["rejected"] += 1
            else:
                if key in first:
                    outcome.records.extend(first[key].records)
                outcome.counts["duplicate"] += 1
        return fresh

    async def _load(self, tx: Transaction, deliveries: list[Delivery]) -> BatchUnitOfWork:
        started = time.perf_counter()
        wanted: dict[Aggregate[Any], set[Key]] = defaultdict(set)
        for delivery in deliveries:
            assert delivery.route is not None
            assert delivery.envelope is not None
            for load in delivery.route.loads:
                key = load.key(delivery.envelope.payload, delivery.envelope)
                if key is None:  # None: this message reads nothing of that kind
                    continue
                keys = key if load.many else (key,)
                wanted[load.aggregate].update(normalize_key(one) for one in keys)
        uow = BatchUnitOfWork(self._clock)
        await uow.load(tx, wanted)
        METRICS.stage("load", time.perf_counter() - started)
        return uow

    async def _run_together(self, tx: Transaction, deliveries: list[Delivery], outcome: _Outcome) -> None:
        uow = await self._load(tx, deliveries)
        started = time.perf_counter()
        for delivery in deliveries:
            self._handle(uow, delivery, outcome)
        METRICS.stage("handle", time.perf_counter() - started)
        try:
            await uow.write(tx)
        except VersionConflict:
            raise
        except Exception as error:
            if is_system_failure(error):
                raise
            log.warning("writing the batch failed; re-running each message alone", error=repr(error))
            raise _BatchFailed from error

    async def _run_isolated(self, tx: Transaction, deliveries: list[Delivery], outcome: _Outcome) -> None:
        """Each message with its own unit of work and savepoint: a write that fails is one
        message's bug, retried and then dead-lettered while the others go through."""
        for delivery in deliveries:
            error: Exception | None = None
            for _attempt in range(self._attempts):
                single = _Outcome()
                try:
                    async with tx.savepoint():
                        uow = await self._load(tx, [delivery])
                        self._handle(uow, delivery, single)
                        await uow.write(tx)
                except VersionConflict:
                    raise
                except Exception as caught:
                    if is_system_failure(caught):
                        raise
                    error = caught
                    continue
                outcome.records.extend(single.records)
                outcome.handled.extend(single.handled)
                outcome.effects.extend(single.effects)
                outcome.keyed.extend(single.keyed)
                for name, count in single.counts.items():
                    outcome.counts[name] += count
                break
            else:
                self._give_up(delivery, error, outcome)

    def _handle(self, uow: BatchUnitOfWork, delivery: Delivery, outcome: _Outcome) -> None:
        """Run one message's handler in memory: kept, refused, or (after retries) a bug."""
        assert delivery.envelope is not None
        assert delivery.route is not None
        envelope = delivery.envelope
        traced = tracing.handling(
            delivery.record.headers,
            envelope.type,
            topic=delivery.record.topic,
            message_id=delivery.message_id,
            correlation_id=envelope.correlation_id,
        )
        with traced as trace_id, message_context(envelope.correlation_id, delivery.message_id, envelope.type, trace_id):
            error: Exception | None = None
            for attempt in range(1, self._attempts + 1):
                scope = uow.scope()
                context = HandlerContext(
                    envelope,
                    self.name,
                    scope,
                    self._clock,
                    deps=self._dependencies,
                    rejections_topic=self._rejections_topic,
                )
                try:
                    check_consent(envelope)
                    delivery.route.handler(envelope.payload, context)
                except CommandRefused as refusal:
                    scope.discard()
                    log.info("command refused", code=refusal.code, reason=refusal.reason)
                    rejection = self._rejection(envelope, refusal)
                    outcome.records.append(rejection)
                    outcome.handled.append((delivery.message_id, envelope.type))
                    outcome.counts["rejected"] += 1
                    self._remember_key(delivery, [rejection], outcome)
                    return
                except Exception as caught:
                    scope.discard()
                    error = caught
                    log.warning("handler failed", attempt=attempt, of=self._attempts, error=repr(caught))
                    continue
                scope.keep()
                outcome.records.extend(context.emitted)
                outcome.effects.extend(context.effects)
                outcome.handled.append((delivery.message_id, envelope.type))
                outcome.counts["handled"] += 1
                self._remember_key(delivery, context.emitted, outcome)
                return
            self._give_up(delivery, error, outcome)

    @staticmethod
    def _remember_key(delivery: Delivery, records: list[OutgoingRecord], outcome: _Outcome) -> None:
        if delivery.route is not None and delivery.route.keyed and delivery.envelope is not None:
            envelope = delivery.envelope
            outcome.keyed.append((idempotency.scoped_key(envelope), idempotency.fingerprint(envelope), records))

    def _give_up(self, delivery: Delivery, error: Exception | None, outcome: _Outcome) -> None:
        reason = f"handler failed {self._attempts} times: {describe_bug(error)}"
        log.error("message dead-lettered", failure_class="bug", reason=reason)
        outcome.records.append(self._dead_letter(delivery.record, "bug", reason))
        outcome.counts["dead_lettered"] += 1

    def _rejection(self, envelope: Envelope[Any], refusal: CommandRefused) -> OutgoingRecord:
        return rejection(envelope, refusal, source=self.name, topic=self._rejections_topic, now=self._clock.now())

    def _dead_letter(self, record: ConsumedRecord, failure_class: str, reason: str) -> OutgoingRecord:
        if failure_class == "record":
            log.warning(
                "record dead-lettered",
                failure_class=failure_class,
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
                reason=reason,
            )
        return OutgoingRecord(
            topic=DEAD_LETTER.name,
            key=record.key,
            value=record.value or b"",
            headers=(
                *((k, v) for k, v in record.headers if not k.startswith("tg-dead-letter-")),
                (DEAD_LETTER_REASON, reason[:2000].encode()),
                (DEAD_LETTER_CLASS, failure_class.encode()),
                (DEAD_LETTER_SOURCE, f"{record.topic}/{record.partition}/{record.offset}".encode()),
                (DEAD_LETTER_CONSUMER, self.name.encode()),
                (DEAD_LETTER_AT, self._clock.now().isoformat().encode()),
            ),
        )


def rejection(
    envelope: Envelope[Any], refusal: CommandRefused, *, source: str, topic: Topic, now: datetime
) -> OutgoingRecord:
    """The CommandRejected record answering a refused command."""
    rejected = CommandRejected(
        subject_id=envelope.payload.partition_key,
        rejected_message_id=envelope.message_id,
        rejected_type=envelope.type,
        code=refusal.code,
        reason=refusal.reason,
    )
    return outgoing(
        rejected,
        source=source,
        correlation_id=envelope.correlation_id,
        causation_id=envelope.message_id,
        idempotency_key=f"{envelope.message_id}:CommandRejected",
        topic=topic,
        occurred_at=now,
    )


def describe_bug(error: BaseException | None) -> str:
    """The exception and where it was raised (the traceback's last frame), without locals."""
    if error is None:
        return "unknown error"
    frames = traceback.extract_tb(error.__traceback__)
    where = f" at {frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno} in {frames[-1].name}" if frames else ""
    return f"{type(error).__name__}: {error}{where}"
