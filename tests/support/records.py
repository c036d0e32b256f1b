"""Build Kafka-like consumer records for tests that drive a consumer without a broker."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from datetime import datetime

from contracts import Actor, Command, Message
from contracts.catalogue import PRODUCERS, party_actor
from scripts.marketplace import UNSET, Unset
from shared.consumer import outgoing

_offsets = itertools.count()


@dataclass(frozen=True, slots=True)
class Record:
    """Looks like aiokafka's ConsumerRecord to the consumer."""

    topic: str
    value: bytes | None
    key: bytes | None = None
    partition: int = 0
    offset: int = field(default_factory=lambda: next(_offsets))
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp: int = field(default_factory=lambda: int(time.time() * 1000))
    timestamp_type: int = 0  # CreateTime; 1 is the broker's LogAppendTime


def record_of(
    message: Message,
    *,
    correlation_id: str = "test",
    idempotency_key: str | None = None,
    occurred_at: datetime | None = None,
    signer: str | None = None,
    actor: Actor | Unset | None = UNSET,
) -> Record:
    """The record a producer would send for ``message`` (stamped now unless ``occurred_at``),
    signed as ``signer`` (default: the first producer the catalogue names for its type), for
    ``actor`` (default: the party the command names, where it needs their consent)."""
    out = outgoing(
        message,
        source="test",
        correlation_id=correlation_id,
        idempotency_key=idempotency_key or f"test-{next(_offsets)}",
        occurred_at=occurred_at,
        signer=signer or PRODUCERS[message.message_type][0],
        actor=party_actor(message) if isinstance(actor, Unset) else actor,
    )
    return Record(topic=out.topic, value=out.value, key=out.key, headers=out.headers)


def raw_record(command: type[Command], value: bytes, key: bytes = b"k") -> Record:
    """A record on ``command``'s topic with arbitrary bytes (for malformed input)."""
    return Record(topic=command.topic.name, value=value, key=key)
