"""Dead letters as the CLI sees them: parsing the record format, masking, filters, re-drive plans.

Pure functions only (no Kafka), so every rule here is decided once and the commands stay thin.

The record format is fixed by the services (see contracts.topics): key and value are the original
record's bytes, the headers are the original headers followed by the ``tg-dead-letter-*`` ones.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeAlias

from contracts.topics import (
    DEAD_LETTER,
    DEAD_LETTER_AT,
    DEAD_LETTER_CLASS,
    DEAD_LETTER_CONSUMER,
    DEAD_LETTER_HEADER_NAMES,
    DEAD_LETTER_REASON,
    DEAD_LETTER_SOURCE,
    MESSAGE_TYPE_HEADER,
    REDRIVE_COUNT,
)

UNKNOWN = "?"
MASK = "***"

Json: TypeAlias = "bool | int | float | str | list[Json] | dict[str, Json] | None"
JsonObject: TypeAlias = dict[str, Json]
Headers: TypeAlias = tuple[tuple[str, bytes | None], ...]  # Kafka allows null header values


class KafkaRecord(Protocol):
    """The part of aiokafka's ConsumerRecord this module reads."""

    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes | None]]: ...


class InvalidIdError(ValueError):
    """A dead-letter ID on the command line that is not ``<partition>:<offset>``."""


@dataclass(frozen=True, slots=True, order=True)
class DeadLetterId:
    """Where a dead letter sits on the dead-letter topic; printed and typed as ``partition:offset``."""

    partition: int
    offset: int

    def __str__(self) -> str:
        return f"{self.partition}:{self.offset}"

    @classmethod
    def parse(cls, text: str) -> DeadLetterId:
        match = re.fullmatch(r"(\d{1,9}):(\d{1,19})", text.strip())
        if match is None:
            raise InvalidIdError(f"{text!r} is not a dead-letter ID (expected <partition>:<offset>, e.g. 1:42)")
        return cls(int(match[1]), int(match[2]))


@dataclass(frozen=True, slots=True)
class Source:
    """Where the original record was read from: the place a re-drive publishes to."""

    topic: str
    partition: int
    offset: int

    def __str__(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"

    @classmethod
    def parse(cls, text: str) -> Source | None:
        """``topic/partition/offset``; None when malformed (topic names cannot contain '/')."""
        match = re.fullmatch(r"([A-Za-z0-9._-]+)/(\d{1,9})/(\d{1,19})", text)
        return None if match is None else cls(match[1], int(match[2]), int(match[3]))


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One record of the dead-letter topic, with its headers interpreted."""

    id: DeadLetterId
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: Headers
    # The value parsed once (it may be megabytes): the JSON object, or None when it is not one.
    body: JsonObject | None = field(default=None, compare=False, repr=False)

    @classmethod
    def of(cls, record: KafkaRecord) -> DeadLetter:
        return cls(
            id=DeadLetterId(record.partition, record.offset),
            timestamp_ms=record.timestamp,
            key=record.key,
            value=record.value,
            headers=tuple(record.headers),
            body=json_object(record.value),
        )

    def _dead_letter_header(self, name: str) -> str | None:
        # The service appends its headers after the original ones, so the last occurrence is its own.
        value = _last(self.headers, name)
        return None if value is None else value.decode("utf-8", errors="replace")

    @property
    def original_headers(self) -> Headers:
        """The headers the original record carried (everything but the tg-dead-letter-* ones)."""
        return tuple((name, value) for name, value in self.headers if name not in DEAD_LETTER_HEADER_NAMES)

    @property
    def reason(self) -> str:
        return self._dead_letter_header(DEAD_LETTER_REASON) or UNKNOWN

    @property
    def dead_letter_class(self) -> str:
        return self._dead_letter_header(DEAD_LETTER_CLASS) or UNKNOWN

    @property
    def service(self) -> str:
        return self._dead_letter_header(DEAD_LETTER_CONSUMER) or UNKNOWN

    @property
    def source_header(self) -> str | None:
        return self._dead_letter_header(DEAD_LETTER_SOURCE)

    @property
    def source(self) -> Source | None:
        text = self.source_header
        return None if text is None else Source.parse(text)

    @property
    def at_from_header(self) -> datetime | None:
        text = self._dead_letter_header(DEAD_LETTER_AT)
        return None if text is None else parse_iso_datetime(text)

    @property
    def at(self) -> datetime:
        """When it was dead-lettered; old dead letters without the header fall back to the Kafka timestamp."""
        return self.at_from_header or datetime.fromtimestamp(self.timestamp_ms / 1000, UTC)

    @property
    def message_type(self) -> str:
        """The ``tg-type`` header when it is valid UTF-8, else the JSON value's "type", else "?"."""
        header = _last(self.original_headers, MESSAGE_TYPE_HEADER)
        if header:
            try:
                return header.decode("utf-8")
            except UnicodeDecodeError:
                pass
        kind = self.body.get("type") if self.body is not None else None
        return kind if isinstance(kind, str) else UNKNOWN

    @property
    def redrive_count(self) -> int | None:
        """Times the original was re-driven before (0 if never); None if the header is not a number."""
        header = _last(self.original_headers, REDRIVE_COUNT)
        if header is None:
            return 0
        text = header.decode("ascii", errors="replace")
        return int(text) if text.isdigit() and len(text) <= 9 else None

    @property
    def payload(self) -> Json:
        """What may be shown of the value: a JSON object with secrets masked, or a summary string."""
        return payload_view(self.value, self.body)


def _last(headers: Headers, name: str) -> bytes | None:
    """The last value of header ``name``; None if absent or null (both mean "not set" to us)."""
    for header, value in reversed(headers):
        if header == name:
            return value
    return None


def parse_iso_datetime(text: str) -> datetime | None:
    """An ISO 8601 time as an aware datetime; a time without an offset is taken as UTC."""
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


# --- masking -------------------------------------------------------------------------------

# Compared word by word (snake_case, camelCase, kebab-case all split into words), so "pin" masks
# "pin", "PIN", "card_pin" and "userPin" but not "shipping"; "pan" masks "pan" but not "company".
SECRET_WORDS = frozenset(
    {"pin", "otp", "password", "passcode", "secret", "token", "cvv", "cvc", "pan", "iban", "totp"}
    | {"cardnumber", "documentnumber", "accountnumber"}
)
SECRET_WORD_PAIRS = frozenset({("card", "number"), ("document", "number"), ("account", "number")})


def key_words(key: str) -> list[str]:
    """``cardNumber`` / ``card_number`` / ``CARD-NUMBER`` -> ``["card", "number"]``."""
    return [word.lower() for word in re.findall(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+", key)]


def is_secret_key(key: str) -> bool:
    words = key_words(key)
    return any(word in SECRET_WORDS for word in words) or any(
        pair in SECRET_WORD_PAIRS for pair in itertools.pairwise(words)
    )


def mask(value: Json) -> Json:
    """The value with everything under a secret-looking key replaced by "***", at any depth."""
    if isinstance(value, dict):
        return {key: MASK if is_secret_key(key) else mask(item) for key, item in value.items()}
    if isinstance(value, list):
        return [mask(item) for item in value]
    return value


def _reject_constant(name: str) -> Any:
    # NaN / Infinity are not JSON; treating them as "not JSON" keeps --json output valid.
    raise ValueError(name)


def _loads(value: bytes) -> Json:
    """Raises ValueError (or RecursionError) when ``value`` is not JSON."""
    parsed: Json = json.loads(value, parse_constant=_reject_constant)
    return parsed


def json_object(value: bytes | None) -> JsonObject | None:
    """The value as a JSON object, or None when it is empty, not JSON, or JSON of another kind."""
    if not value:
        return None
    try:
        parsed = _loads(value)
    except (ValueError, RecursionError):
        return None
    return parsed if isinstance(parsed, dict) else None


def payload_view(value: bytes | None, body: JsonObject | None) -> Json:
    """Never raw bytes: the masked JSON object, or a summary such as ``<2,097,152 bytes, not JSON>``."""
    if value is None:
        return "<no value>"
    if body is None:
        return _summary(value)
    try:
        return mask(body)
    except RecursionError:
        return f"<{len(value):,} bytes, JSON nested too deeply to show>"


def _summary(value: bytes) -> str:
    if not value:
        return "<0 bytes, empty>"
    try:
        _loads(value)
    except (ValueError, RecursionError):
        return f"<{len(value):,} bytes, not JSON>"
    return f"<{len(value):,} bytes, JSON but not an object>"


def key_view(key: bytes | None) -> str | None:
    """The record key as text (keys are order / account ids); a summary when it is not UTF-8."""
    if key is None:
        return None
    try:
        return key.decode("utf-8")
    except UnicodeDecodeError:
        return f"<{len(key):,} bytes, not UTF-8>"


# --- filters -------------------------------------------------------------------------------

_DURATION_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_since(text: str, now: datetime) -> datetime | None:
    """``--since``: an ISO 8601 time, or a duration back from now (``30s``, ``10m``, ``2h``, ``1d``)."""
    match = re.fullmatch(r"(\d{1,9})([smhd])", text.strip().lower())
    if match is not None:
        return now - timedelta(**{_DURATION_UNITS[match[2]]: int(match[1])})
    return parse_iso_datetime(text)


def select(
    letters: Sequence[DeadLetter], *, services: Sequence[str] = (), since: datetime | None = None
) -> list[DeadLetter]:
    """The dead letters from any of ``services`` (all if empty) dead-lettered at or after ``since``."""
    return [
        letter
        for letter in letters
        if (not services or letter.service in services) and (since is None or letter.at >= since)
    ]


# --- re-drive ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Redrive:
    """The record a re-drive publishes: the original, back where it was read from."""

    dead_letter: DeadLetterId
    topic: str
    partition: int
    key: bytes | None
    value: bytes | None
    headers: Headers
    count: int


class RedriveRefusedError(ValueError):
    """A dead letter that cannot be re-driven; the message names the ID and why."""


def plan_redrive(
    letter_id: DeadLetterId, letter: DeadLetter | None, partitions: Mapping[str, frozenset[int]]
) -> Redrive:
    """What re-driving ``letter_id`` publishes; refuses anything that does not lead back to a real partition.

    ``partitions`` is the broker's topics and their partitions, so a source naming a topic or
    partition that does not exist is refused here rather than left to hang in the producer.
    """
    if letter is None:
        where = ", ".join(str(p) for p in sorted(partitions.get(DEAD_LETTER.name, ())))
        raise RedriveRefusedError(
            f"{letter_id}: no such dead letter on {DEAD_LETTER.name} (partitions {where}; see `dead-letters list`)"
        )
    text = letter.source_header
    if text is None:
        raise RedriveRefusedError(f"{letter_id}: no {DEAD_LETTER_SOURCE} header, so there is nowhere to re-drive it")
    source = Source.parse(text)
    if source is None:
        raise RedriveRefusedError(f"{letter_id}: {DEAD_LETTER_SOURCE} header {text!r} is not topic/partition/offset")
    if source.topic == DEAD_LETTER.name:
        raise RedriveRefusedError(f"{letter_id}: its source is the dead-letter topic itself ({source})")
    if source.partition not in partitions.get(source.topic, frozenset()):
        missing = "topic" if source.topic not in partitions else "partition"
        raise RedriveRefusedError(f"{letter_id}: source {source}: that {missing} does not exist on the broker")
    count = (letter.redrive_count or 0) + 1
    headers = tuple((name, value) for name, value in letter.original_headers if name != REDRIVE_COUNT)
    return Redrive(
        dead_letter=letter_id,
        topic=source.topic,
        partition=source.partition,
        key=letter.key,
        value=letter.value,
        headers=(*headers, (REDRIVE_COUNT, str(count).encode("ascii"))),
        count=count,
    )
