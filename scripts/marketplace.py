"""A marketplace's side of TradeGuard: publish commands, watch events. Depends on contracts, and on
shared.signing for the signature every record carries (SPEC X9)."""

from __future__ import annotations

import asyncio
import copy
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Self, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from contracts import (
    ALL_TOPICS,
    Command,
    Envelope,
    InvalidMessage,
    Message,
    RawEnvelope,
    Topic,
    decode_message,
    parse_envelope,
)
from contracts.catalogue import OPERATOR, party_actor
from contracts.envelope import Actor, envelope_for
from contracts.topics import MESSAGE_TYPE_HEADER
from scripts.stack import client_keyring
from shared.broker import RenewingProducer, stop_consumer
from shared.broker_security import client_options
from shared.signing import PRINCIPALS, Keyring


@dataclass(frozen=True, slots=True)
class Seen:
    """A message observed on a topic, with the local time it arrived."""

    topic: str
    envelope: Envelope[Any]
    message: Message
    received_at: float  # time.time()


@dataclass(frozen=True, slots=True)
class RawRecord:
    """A record as it came off the topic."""

    topic: str
    value: bytes | None
    headers: dict[str, bytes]


T = TypeVar("T")


class Unset:
    """No value given (None is a value: no actor)."""


UNSET = Unset()


class Marketplace:
    """Publishes commands the way a marketplace integration would, signed as the ``marketplace``
    principal, or as ``source`` when that is a principal (``operator`` for the operators' tools).
    ``keyring``: the stack's keys (default: :func:`scripts.stack.client_keyring`)."""

    def __init__(self, bootstrap_servers: str, source: str = "marketplace", keyring: Keyring | None = None) -> None:
        self.source = source
        self.principal = source if source in PRINCIPALS else "marketplace"
        self._keyring = keyring or client_keyring()
        self._signer = self._keyring.signer(self.principal)
        options = {**client_options(self.principal), "bootstrap_servers": bootstrap_servers}
        self._producer = RenewingProducer(lambda: AIOKafkaProducer(**options, enable_idempotence=True, acks="all"))

    def signing_as(self, principal: str) -> Marketplace:
        """This client's connection, publishing as another principal whose key it holds (the
        scenarios play the operators too). Close only the original."""
        other = copy.copy(self)
        other.source = other.principal = principal
        other._signer = self._keyring.signer(principal)
        return other

    async def __aenter__(self) -> Self:
        await self._producer.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._producer.stop()

    async def publish(
        self, command: Command, *, correlation_id: str, idempotency_key: str, actor: Actor | Unset | None = UNSET
    ) -> RawEnvelope:
        """Send ``command`` as the marketplace does for the person it authenticated: by default the
        party the command names (the buyer of a ``ConfirmReceipt``: X9, the buyer's consent);
        ``actor`` names someone else (a seller's session), or None for no one."""
        envelope = envelope_for(
            command,
            correlation_id=correlation_id,
            idempotency_key=idempotency_key,
            source=self.source,
            actor=party_actor(command) if isinstance(actor, Unset) else actor,
        )
        await self.publish_raw(command.topic, command.partition_key, envelope.model_dump_json().encode(), command)
        return parse_envelope(envelope.model_dump_json())

    async def publish_raw(
        self, topic: Topic, key: str, value: bytes, command: Command | None = None, *, sign: bool = True
    ) -> None:
        """Send bytes as they are (used to replay a record or to send a malformed one), signed
        as they are unless ``sign`` is false (an unsigned record, as a forger without keys sends)."""
        kind = command.message_type.encode() if command else None
        headers = [(MESSAGE_TYPE_HEADER, kind)] if kind else []
        if sign:
            headers.extend(self._signer.headers(topic.name, key.encode(), kind, value))
        await self._producer.send_and_wait(topic.name, value, key=key.encode(), headers=headers)


NAMING_FIELDS = ("order_id", "account_id", "subject_id")
"""The payload fields whose ids :meth:`EventWatcher.wait_for`'s ``about`` finds a message by."""


def names(envelope: Envelope[Any]) -> set[str]:
    """The ids a message is about: its correlation id and the ids its payload's naming fields hold."""
    named = {envelope.correlation_id} if envelope.correlation_id else set()
    for name in NAMING_FIELDS:
        if isinstance(value := getattr(envelope.payload, name, None), str):
            named.add(value)
    return named


class EventWatcher:
    """Reads topics from their current end and lets callers await a matching message."""

    def __init__(self, bootstrap_servers: str, topics: Iterable[Topic] = ALL_TOPICS) -> None:
        # The operators' principal: the only one that may read every topic.
        self._consumer = AIOKafkaConsumer(
            **client_options(OPERATOR), bootstrap_servers=bootstrap_servers, enable_auto_commit=False
        )
        self._topics = list(topics)
        self.seen: list[Seen] = []
        # ``seen`` by causation id and by the ids each message names: a waiter scans what its
        # command caused, or what names its order or account, not everything (a new waiter
        # starts from the first message: over a long chaos run's million messages, scanning
        # them all for each of its thousands of waits grows with the square of the run).
        self._caused: dict[uuid.UUID, list[Seen]] = {}
        self._about: dict[str, list[Seen]] = {}
        self.raw: list[RawRecord] = []
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        await self._consumer.start()
        partitions = [TopicPartition(t.name, p) for t in self._topics for p in range(t.partitions)]
        self._consumer.assign(partitions)
        await self._consumer.seek_to_end(*partitions)
        for partition in partitions:  # resolve positions now, so nothing published later is missed
            await self._consumer.position(partition)
        self._task = asyncio.create_task(self._pump())
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._task is not None:
            self._task.cancel()
        await stop_consumer(self._consumer)

    async def _pump(self) -> None:
        while True:
            batches = await self._consumer.getmany(timeout_ms=100)
            records = [r for batch in batches.values() for r in batch]
            if not records:
                continue
            for record in records:
                self.raw.append(RawRecord(record.topic, record.value, dict(record.headers)))
                try:
                    envelope = decode_message(record.value or b"")
                except InvalidMessage:
                    continue  # malformed records are the dead-letter topic's business
                seen = Seen(record.topic, envelope, envelope.payload, time.time())
                self.seen.append(seen)
                if envelope.causation_id is not None:
                    self._caused.setdefault(envelope.causation_id, []).append(seen)
                for named in names(envelope):
                    self._about.setdefault(named, []).append(seen)
            async with self._changed:
                self._changed.notify_all()

    async def wait_for(
        self,
        predicate: Callable[[Seen], bool],
        timeout: float = 30.0,
        *,
        caused_by: uuid.UUID | None = None,
        about: str | None = None,
    ) -> Seen:
        """The first message (already seen or arriving) that matches. ``caused_by``: only what
        that message caused can match; ``about``: only messages that name that id (see
        :func:`names`) can. Either narrows the search, never what matches."""
        if caused_by is not None:
            items = self._caused.setdefault(caused_by, [])
        elif about is not None:
            items = self._about.setdefault(about, [])
        else:
            items = self.seen
        return await self._wait(items, predicate, timeout)

    async def wait_for_record(self, predicate: Callable[[RawRecord], bool], timeout: float = 30.0) -> RawRecord:
        """The first record, parsed or not (dead letters are raw bytes), that matches."""
        return await self._wait(self.raw, predicate, timeout)

    async def _wait(self, items: list[T], predicate: Callable[[T], bool], timeout: float) -> T:
        # Each waiter goes on from where it stopped: the lists only grow, and a run of thousands
        # of orders has hundreds of waiters over hundreds of thousands of messages.
        scanned, found = 0, []

        def matched() -> bool:
            nonlocal scanned
            while scanned < len(items):
                item = items[scanned]
                scanned += 1
                if predicate(item):
                    found.append(item)
                    return True
            return False

        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(matched)
        return found[0]

    def about(self, correlation_id: str) -> list[Seen]:
        return sorted(
            (s for s in self.seen if s.envelope.correlation_id == correlation_id), key=lambda s: s.envelope.occurred_at
        )
