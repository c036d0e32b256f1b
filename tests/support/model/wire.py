"""The money model's wire: records on their way, the stores the real handlers read and write,
and the consumer that runs a service's real handlers.

Every message goes over this wire the way it goes over Kafka: the handler's context makes the
signed record (``shared.consumer.outgoing``), and the receiver gets the envelope decoded from
the record's bytes (``contracts.decode_message``), so a field the wire cannot carry fails here as
it would in production. What is stored goes through each aggregate's own row mapping (``to_row``
on commit, ``from_row`` on every read), as the unit of work stores it.

:class:`Consumer` is shared/consumer.py for a batch of one record: the inbox drops a message id
it has handled; a keyed command repeated under its idempotency key gets its first records again
(shared/idempotency.py); a :class:`~shared.errors.CommandRefused` keeps none of the handler's
writes and is answered with a ``CommandRejected`` (shared.consumer.rejection).
"""

from __future__ import annotations

import copy
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from contracts import Message, decode_message
from contracts.envelope import Envelope, envelope_for
from contracts.topics import Topic
from shared.aggregates import Aggregate, Journal, Key, Row
from shared.consumer import HandlerContext, MessageHandlers, rejection
from shared.errors import CommandRefused
from shared.idempotency import fingerprint, scoped_key
from shared.outbox import OutgoingRecord
from shared.unit_of_work import normalize_key

A = TypeVar("A")


class ModelClock:
    """The one clock every service of the model reads (X8); only the model moves it."""

    def __init__(self, start: datetime) -> None:
        self._now = start

    def now(self) -> datetime:
        return self._now

    def move_to(self, at: datetime) -> None:
        assert at >= self._now, "the model's clock never moves backwards"
        self._now = at


@dataclass(frozen=True, slots=True)
class Letter:
    """One record on its way to the service that consumes it (decoded from the record's bytes)."""

    envelope: Envelope[Any]
    to: str
    topic: str

    @property
    def partition(self) -> tuple[str, str, str]:
        """What Kafka keeps in order for its consumer: one topic's records of one key."""
        return (self.to, self.topic, self.subject)

    @property
    def message(self) -> Message:
        payload: Message = self.envelope.payload
        return payload

    @property
    def message_id(self) -> uuid.UUID:
        return self.envelope.message_id

    @property
    def type(self) -> str:
        return self.envelope.type

    @property
    def subject(self) -> str:
        """The order (or account) the record is keyed by."""
        return self.message.partition_key

    def __str__(self) -> str:
        return f"{self.type}({self.subject}) -> {self.to}"


def letter_of(record: OutgoingRecord, to: str) -> Letter:
    return Letter(decode_message(record.value), to, record.topic)


def envelope(
    message: Message,
    *,
    source: str,
    now: datetime,
    idempotency_key: str,
    causation_id: uuid.UUID | None = None,
    message_id: uuid.UUID | None = None,
) -> Envelope[Any]:
    """An envelope made by a client of the model (the marketplace, an operator, the sweeper, the
    network worker), round-tripped through JSON like every other record."""
    made = envelope_for(
        message,
        correlation_id=message.partition_key,
        idempotency_key=idempotency_key,
        source=source,
        causation_id=causation_id,
        occurred_at=now,
        message_id=message_id,
    )
    return decode_message(made.model_dump_json().encode())


class DuplicateTransfer(AssertionError):
    """A ledger transfer id stored twice: one ledger effect per (order, step) is broken (the
    database's unique ``transfer_id`` would refuse the batch)."""


@dataclass
class MemoryStore:
    """One service's database: rows per aggregate and key, a version per row, append-only journals."""

    rows: dict[str, dict[Key, Row]] = field(default_factory=lambda: defaultdict(dict))
    versions: dict[tuple[str, Key], int] = field(default_factory=dict)
    journals: dict[str, list[Row]] = field(default_factory=lambda: defaultdict(list))
    unique: dict[str, tuple[str, set[Any]]] = field(default_factory=dict)
    generation: int = 0  # moves with every write
    _read: dict[str, tuple[int, list[Any]]] = field(default_factory=dict)

    def declare_unique(self, journal: Journal, column: str) -> None:
        self.unique[journal.name] = (column, set())

    def load(self, aggregate: Aggregate[A], key: Key) -> A | None:
        row = self.rows[aggregate.name].get(normalize_key(key))
        return None if row is None else aggregate.from_row(_copy(row))

    def all(self, aggregate: Aggregate[A]) -> list[A]:
        """Every stored item, for reading only (the model's audit; handlers use :meth:`load`)."""
        cached = self._read.get(aggregate.name)
        if cached is None or cached[0] != self.generation:
            cached = (self.generation, [aggregate.from_row(_copy(row)) for row in self.rows[aggregate.name].values()])
            self._read[aggregate.name] = cached
        return list(cached[1])

    def put(self, aggregate: Aggregate[A], item: A) -> None:
        key = normalize_key(aggregate.key_of(item))
        self.rows[aggregate.name][key] = _copy(aggregate.to_row(item))
        self.versions[(aggregate.name, key)] = self.versions.get((aggregate.name, key), 0) + 1
        self.generation += 1

    def version(self, aggregate: Aggregate[Any], key: Key) -> int:
        return self.versions.get((aggregate.name, normalize_key(key)), 0)

    def append(self, journal_name: str, row: Row) -> None:
        if (unique := self.unique.get(journal_name)) is not None:
            column, seen = unique
            if row[column] in seen:
                raise DuplicateTransfer(f"{journal_name}.{column} {row[column]!r} stored twice")
            seen.add(row[column])
        self.journals[journal_name].append(_copy(row))
        self.generation += 1

    def fingerprint(self) -> dict[str, dict[Key, Row]]:
        """Every aggregate's rows (the journals aside: an audit row says nothing changed). A
        write replaces a row, never changes one in place, so the rows themselves can be kept."""
        return {name: dict(rows) for name, rows in self.rows.items() if rows}


def _copy(row: Row) -> Row:
    """A row as a database gives it back: nothing shared with what was written (JSON columns
    such as an order's timers are copied; plain values are immutable)."""
    return {name: copy.deepcopy(value) if isinstance(value, dict | list) else value for name, value in row.items()}


class MemoryScope:
    """What one handler sees (shared.unit_of_work.MessageScope over a batch of one): loaded
    objects are its own copies; :meth:`commit` writes every one it touched, or nothing is kept."""

    __slots__ = ("_journal", "_store", "_touched")

    def __init__(self, store: MemoryStore) -> None:
        self._store = store
        self._touched: dict[tuple[str, Key], tuple[Aggregate[Any], Any]] = {}
        self._journal: list[tuple[str, Row]] = []

    def get(self, aggregate: Aggregate[A], key: Key) -> A | None:
        if key is None:
            return None
        index = (aggregate.name, normalize_key(key))
        if index not in self._touched:
            self._touched[index] = (aggregate, self._store.load(aggregate, key))
        item: A | None = self._touched[index][1]
        return item

    def add(self, aggregate: Aggregate[A], item: A) -> A:
        key = aggregate.key_of(item)
        if self.get(aggregate, key) is not None:
            raise ValueError(f"{aggregate.name} {key!r} already exists")
        self._touched[(aggregate.name, normalize_key(key))] = (aggregate, item)
        return item

    def append(self, journal: Journal, row: Row) -> None:
        self._journal.append((journal.name, row))

    def commit(self) -> None:
        for aggregate, item in self._touched.values():
            if item is not None:
                self._store.put(aggregate, item)
        for name, row in self._journal:
            self._store.append(name, row)


@dataclass(frozen=True, slots=True)
class Handled:
    """What a consumer did with one record."""

    emitted: tuple[OutgoingRecord, ...] = ()
    duplicate: bool = False  # the inbox had its message id: nothing ran
    refused: str | None = None  # the refusal's code: answered with CommandRejected, nothing kept


class Consumer:
    """One service: its real handlers, its store, its inbox and its keyed commands' first outcomes."""

    def __init__(
        self, name: str, handlers: MessageHandlers, clock: ModelClock, *, deps: object, rejections: Topic
    ) -> None:
        self.name, self.handlers, self.clock, self.deps, self.rejections = name, handlers, clock, deps, rejections
        self.store = MemoryStore()
        self.inbox: set[uuid.UUID] = set()
        self.first_outcomes: dict[str, tuple[str, tuple[OutgoingRecord, ...]]] = {}
        self.handled = 0

    def handles(self, message_type: str) -> bool:
        return self.handlers.route(message_type) is not None

    def receive(self, letter: Letter) -> Handled:
        envelope = letter.envelope
        if envelope.message_id in self.inbox:
            return Handled(duplicate=True)
        route = self.handlers.route(envelope.type)
        assert route is not None, f"{self.name} has no handler for {envelope.type}"
        self.handled += 1
        if route.keyed and (first := self.first_outcomes.get(scoped_key(envelope))) is not None:
            self.inbox.add(envelope.message_id)
            if first[0] != fingerprint(envelope):
                conflict = CommandRefused("idempotency_conflict", "the same key was used with other content")
                return Handled((self._rejection(envelope, conflict),), refused=conflict.code)
            return Handled(first[1])  # the same records, the same message ids
        scope = MemoryScope(self.store)
        ctx = HandlerContext(envelope, self.name, scope, self.clock, deps=self.deps, rejections_topic=self.rejections)  # type: ignore[arg-type]
        try:
            route.handler(envelope.payload, ctx)
        except CommandRefused as refusal:
            self.inbox.add(envelope.message_id)
            return Handled((self._rejection(envelope, refusal),), refused=refusal.code)
        scope.commit()
        self.inbox.add(envelope.message_id)
        emitted = tuple(ctx.emitted)
        if route.keyed:
            self.first_outcomes[scoped_key(envelope)] = (fingerprint(envelope), emitted)
        return Handled(emitted)

    def _rejection(self, envelope: Envelope[Any], refusal: CommandRefused) -> OutgoingRecord:
        return rejection(envelope, refusal, source=self.name, topic=self.rejections, now=self.clock.now())


def routes(consumers: Iterable[Consumer]) -> Callable[[str], list[str]]:
    """Which of the model's services consume a message type (none: it leaves the model, as a
    notification or a status announcement does)."""
    by_type: dict[str, list[str]] = {}
    listed = list(consumers)

    def consumers_of(message_type: str) -> list[str]:
        if message_type not in by_type:
            by_type[message_type] = [c.name for c in listed if c.handles(message_type)]
        return by_type[message_type]

    return consumers_of
