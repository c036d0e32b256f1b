"""``tradeguard timeline ORDER_ID``: one order's messages across every service, for a person (G3).

tradeguard timeline order-7f3a                     # a table, then the order's status now, its next
                                                   # deadline and what waits on an operator
tradeguard timeline order-7f3a --json              # one JSON object a line, the status last
tradeguard timeline order-7f3a -b 127.0.0.1:19792  # another broker; --state-dir another stack

Every TradeGuard topic is read from its beginning to its end as the command started (no consumer
group, nothing committed), and a message belongs to the order when its correlation id is the order
id or its payload names it (``order_id``; ``subject_id`` for a ``CommandRejected``).

Messages are listed in the order they were published (the Kafka record time), a cause before
its effects: services stamp envelopes with the stack's clock, which a scenario or
``tradeguard clock advance`` may have moved on, while the marketplace stamps its commands with
the real time, so the envelope's time (the ``time`` column) would misorder them. The one-line
"what changed" is the scenario timeline's (:func:`scripts.scenarios.timeline.details`).

The order's status now, its next deadline (which timer, when) and what waits on an operator come
from the saga's read API (``GET /order``, S6); when it does not answer, from the last
``OrderStatusChanged`` on the topics, with a note saying so. ``tradeguard orders`` reads the
saga through the same functions (:func:`saga_url`, :func:`fetch_saga_order`).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from aiokafka import AIOKafkaConsumer, TopicPartition
from rich.table import Table
from rich.text import Text

from contracts import (
    ALL_TOPICS,
    CommandRejected,
    Deadline,
    Envelope,
    InvalidMessage,
    OrderStatusChanged,
    Topic,
    decode_message,
)
from contracts.topics import DEAD_LETTER
from scripts.cli.dead_letters import BootstrapOption, _bootstrap, _console, _printable, _run
from scripts.cli.kafka_io import POLL_MS, KafkaUnavailableError, _consumer, _topic_partitions
from scripts.cli.model import DeadLetter, Json, KafkaRecord
from scripts.stack import StackLayout

SAGA_TIMEOUT = 10.0  # seconds to wait for the saga's read API


class SagaUnavailableError(RuntimeError):
    """The saga's read API cannot be found (no endpoints file, no saga in it) or did not answer."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One record about the order, where it was read and when it was published."""

    topic: str
    partition: int
    offset: int
    published_ms: int  # the Kafka record's timestamp
    envelope: Envelope[Any]
    dead_letter: DeadLetter | None  # set when the record is a dead-lettered copy

    @property
    def message_id(self) -> uuid.UUID:
        return self.envelope.message_id


@dataclass(frozen=True, slots=True)
class Status:
    """The order's status now, what it waits for next and for whom, and where that was learnt."""

    status: str | None
    reason: str | None
    told_by: str
    next_deadline: str | None = None  # the timer that falls first (a contracts.Deadline value)
    next_deadline_at: datetime | None = None
    attention: str | None = None  # what an operator must do, as the saga says it


# --- which messages, in which order (pure) -----------------------------------------------------


def names_order(envelope: Envelope[Any], order_id: str) -> bool:
    """The message is about ``order_id``: by its correlation id, or its payload names the order."""
    payload = envelope.payload
    if envelope.correlation_id == order_id or getattr(payload, "order_id", None) == order_id:
        return True
    return isinstance(payload, CommandRejected) and payload.subject_id == order_id


def entry_of(record: KafkaRecord, topic: str, order_id: str) -> Entry | None:
    """The record as a timeline entry when it is a valid envelope about the order; None otherwise."""
    try:
        envelope = decode_message(record.value or b"")
    except InvalidMessage:
        return None  # unreadable records are listed by `tradeguard dead-letters list`
    if not names_order(envelope, order_id):
        return None
    dead_letter = DeadLetter.of(record) if topic == DEAD_LETTER.name else None
    return Entry(topic, record.partition, record.offset, record.timestamp, envelope, dead_letter)


def in_order(entries: Iterable[Entry]) -> list[Entry]:
    """By publication time, and within one millisecond by the envelope's time; a message never
    before the message that caused it (both may be published in the same millisecond)."""
    ordered = sorted(entries, key=lambda e: (e.published_ms, e.envelope.occurred_at, e.topic, e.partition, e.offset))
    present = {e.message_id for e in ordered}
    placed: list[Entry] = []
    done: set[uuid.UUID] = set()
    waiting: dict[uuid.UUID, list[Entry]] = {}

    def place(entry: Entry) -> None:
        placed.append(entry)
        done.add(entry.message_id)
        for effect in waiting.pop(entry.message_id, []):
            place(effect)

    for entry in ordered:
        cause = entry.envelope.causation_id
        if cause is not None and cause in present and cause not in done and cause != entry.message_id:
            waiting.setdefault(cause, []).append(entry)
        else:
            place(entry)
    # Only a causation cycle (which no producer makes) leaves anything waiting: keep it, in time order.
    left = {id(e) for effects in waiting.values() for e in effects}
    placed.extend(e for e in ordered if id(e) in left)
    return placed


def last_status_event(entries: Sequence[Entry]) -> Status:
    """What the saga last published about the order, when the saga's read API cannot be asked."""
    for entry in reversed(entries):
        payload = entry.envelope.payload
        if isinstance(payload, OrderStatusChanged) and entry.dead_letter is None:
            deadline = None if payload.next_deadline is None else payload.next_deadline.value
            return Status(
                payload.status.value,
                payload.reason,
                "the last OrderStatusChanged",
                next_deadline=deadline,
                next_deadline_at=payload.next_deadline_at,
            )
    return Status(None, None, "no OrderStatusChanged on the topics")


def next_deadline(order: Mapping[str, Any]) -> tuple[str, datetime] | None:
    """The timer of a saga order (``GET /order``) that falls first, and when.

    The read API gives every timer (``timers``: name -> time) and the earliest time
    (``next_deadline_at``) but not its name, so the name is found in the timers, with a tie
    broken as the saga's sweeper breaks it (in the order of :class:`~contracts.Deadline`)."""
    timers: Mapping[str, str] = order.get("timers") or {}
    rank = {deadline.value: n for n, deadline in enumerate(Deadline)}
    due = sorted((datetime.fromisoformat(at), rank.get(name, len(rank)), name) for name, at in timers.items())
    if not due:
        return None
    at, _, name = due[0]
    return name, at


def status_of(order: Mapping[str, Any]) -> Status:
    """A saga order (``GET /order`` or a row of ``GET /orders``) as the timeline's last line."""
    upcoming = next_deadline(order)
    return Status(
        str(order["status"]),
        order.get("reason"),
        "the saga",
        next_deadline=None if upcoming is None else upcoming[0],
        next_deadline_at=None if upcoming is None else upcoming[1],
        attention=order.get("attention"),
    )


def what_changed(entry: Entry) -> str:
    """The scenario timeline's summary of the message; for a dead-lettered copy, who gave up and why."""
    # Imported here: scripts.scenarios loads the services' code, which the CLI's other commands must not need.
    from scripts.marketplace import Seen
    from scripts.scenarios.timeline import details

    summary = details(Seen(entry.topic, entry.envelope, entry.envelope.payload, entry.published_ms / 1000))
    letter = entry.dead_letter
    if letter is None:
        return summary
    return f"dead-lettered by {letter.service} ({letter.dead_letter_class}): {letter.reason}"


# --- reading -----------------------------------------------------------------------------------


async def read_order(
    bootstrap_servers: str, order_id: str, *, topics: Sequence[Topic] = ALL_TOPICS, stall_timeout: float = 30.0
) -> list[Entry]:
    """Every record about ``order_id`` on every TradeGuard topic (or those of ``topics``), up to the
    ends as we started, in order."""
    async with _consumer(bootstrap_servers) as consumer:
        existing = await _topic_partitions(consumer)
        tps = [TopicPartition(topic.name, p) for topic in topics for p in sorted(existing.get(topic.name, frozenset()))]
        if not tps:
            raise KafkaUnavailableError(f"no TradeGuard topic on {bootstrap_servers}: is this TradeGuard's broker?")
        consumer.assign(tps)
        starts = await consumer.beginning_offsets(tps)
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            consumer.seek(tp, starts[tp])
        pending = {tp: ends[tp] for tp in tps if ends[tp] > starts[tp]}
        entries = await _read_until(consumer, pending, order_id, stall_timeout)
    return in_order(entries)


async def _read_until(
    consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int], order_id: str, stall_timeout: float
) -> list[Entry]:
    """Consume each partition up to its end offset; give up when nothing arrives for ``stall_timeout`` s."""
    clock = asyncio.get_running_loop().time
    pending = dict(ends)
    entries: list[Entry] = []
    last_progress = clock()
    while pending:
        batches = await consumer.getmany(*pending, timeout_ms=POLL_MS)
        for tp, records in batches.items():
            found = (entry_of(r, tp.topic, order_id) for r in records if r.offset < ends[tp])
            entries.extend(e for e in found if e is not None)
            last_progress = clock()
        for tp in list(pending):
            if await consumer.position(tp) >= pending[tp]:
                del pending[tp]
        if pending and clock() - last_progress > stall_timeout:
            missing = ", ".join(f"{tp.topic}/{tp.partition}" for tp in pending)
            raise KafkaUnavailableError(f"no records from {missing} for {stall_timeout:.0f} s")
    return entries


def saga_url(state_dir: Path) -> str:
    """The saga's read API, as the stack wrote it in its state folder's endpoints file."""
    endpoints = StackLayout.of(state_dir).endpoints_file
    if not endpoints.exists():
        raise SagaUnavailableError(f"{endpoints} not found: is the stack running (make run), or pass --state-dir")
    try:
        found = json.loads(endpoints.read_text()).get("saga")
    except (ValueError, AttributeError) as error:
        raise SagaUnavailableError(f"{endpoints} is not the stack's endpoints file: {error}") from None
    if not isinstance(found, str):
        raise SagaUnavailableError(f"{endpoints} names no saga read API: restart the stack")
    return found


def fetch_saga_order(base_url: str, order_id: str) -> dict[str, Any] | None:
    """``GET /order``: the order with its refunds, dispute, timers and audit trail; None when the
    saga has no such order."""
    try:
        response = httpx.get(f"{base_url}/order", params={"order_id": order_id}, timeout=SAGA_TIMEOUT)
    except httpx.HTTPError as error:
        raise SagaUnavailableError(f"the saga at {base_url} did not answer: {error}") from None
    if response.status_code == 404:
        return None
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code != 200 or not isinstance(body, dict):
        said = body.get("error") if isinstance(body, dict) else response.text[:200]
        raise SagaUnavailableError(f"the saga at {base_url} answered {response.status_code}: {said}")
    return body


def current_status(state_dir: Path, order_id: str, entries: Sequence[Entry]) -> Status:
    """The order's status from the saga's read API (S6); the last OrderStatusChanged when it cannot answer."""
    try:
        found = fetch_saga_order(saga_url(state_dir), order_id)
    except SagaUnavailableError as error:
        return _fallback(entries, str(error))
    if found is None:
        return _fallback(entries, "the saga has no such order")
    return status_of(found)


def _fallback(entries: Sequence[Entry], why: str) -> Status:
    status = last_status_event(entries)
    return Status(
        status.status,
        status.reason,
        f"{status.told_by} ({why})",
        next_deadline=status.next_deadline,
        next_deadline_at=status.next_deadline_at,
    )


# --- output ------------------------------------------------------------------------------------


def _time(entry: Entry) -> str:
    return entry.envelope.occurred_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def entry_json(entry: Entry) -> dict[str, Json]:
    """One message for --json: what the table shows, plus where it sits and what caused it."""
    envelope = entry.envelope
    return {
        "at": envelope.occurred_at.isoformat(),
        "published_at": datetime.fromtimestamp(entry.published_ms / 1000, UTC).isoformat(),
        "service": envelope.source,
        "type": envelope.type,
        "topic": entry.topic,
        "partition": entry.partition,
        "offset": entry.offset,
        "message_id": str(envelope.message_id),
        "causation_id": None if envelope.causation_id is None else str(envelope.causation_id),
        "correlation_id": envelope.correlation_id,
        "what_changed": what_changed(entry),
    }


def status_json(order_id: str, status: Status) -> dict[str, Json]:
    at = status.next_deadline_at
    return {
        "order_id": order_id,
        "status": status.status,
        "reason": status.reason,
        "next_deadline": status.next_deadline,
        "next_deadline_at": None if at is None else at.isoformat(),
        "attention": status.attention,
        "status_from": status.told_by,
    }


def utc_text(at: datetime) -> str:
    """A time for a person: UTC, to the second."""
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def status_lines(status: Status) -> list[str]:
    """The status now; the next deadline and what waits on an operator, when there are."""
    shown = status.status or "unknown"
    reason = f" ({status.reason})" if status.reason else ""
    lines = [f"status now: {shown}{reason}, as told by {status.told_by}"]
    if status.next_deadline is not None and status.next_deadline_at is not None:
        lines.append(f"next deadline: {status.next_deadline} at {utc_text(status.next_deadline_at)}")
    if status.attention:
        lines.append(f"needs an operator: {status.attention}")
    return lines


def timeline_table(order_id: str, entries: Sequence[Entry]) -> Table:
    table = Table(
        title=f"timeline of {order_id}: {len(entries)} message(s)",
        title_justify="left",
        caption="time: the producer's clock (UTC); listed in the order they were published.",
        caption_justify="left",
    )
    table.add_column("time (UTC)", no_wrap=True)
    table.add_column("service")
    table.add_column("message", overflow="fold")
    table.add_column("topic", overflow="fold")
    table.add_column("what changed", overflow="fold")
    for entry in entries:
        cells = (_time(entry), entry.envelope.source, entry.envelope.type, entry.topic, what_changed(entry))
        # Text, not markup: reasons come from other programs and must not style (or drive) the terminal.
        table.add_row(*(Text(_printable(cell)) for cell in cells))
    return table


def timeline(
    order_id: Annotated[str, typer.Argument(help="The marketplace's order id.", metavar="ORDER_ID")],
    state_dir: Annotated[
        Path, typer.Option(help="The stack's state folder (`make run`: .data), for the order's status now.")
    ] = Path(".data"),
    bootstrap_servers: BootstrapOption = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="JSON lines: one object per message, the order's status last.")
    ] = False,
) -> None:
    """Every message about ORDER_ID across the services, in order: when, which service, what, on which
    topic and what changed, then the order's status now, its next deadline and what waits on an
    operator (G3). Exit 1 when no message names it."""
    if not order_id.strip():
        raise typer.BadParameter("an order id, not an empty string", param_hint="ORDER_ID")
    servers = _bootstrap(bootstrap_servers)
    entries = _run(read_order(servers, order_id))
    if not entries:
        message = f"no message about order {order_id!r} on any TradeGuard topic ({servers})"
        if as_json:
            typer.echo(json.dumps({"order_id": order_id, "error": message}))
        else:
            _console(stderr=True).print(Text.assemble(("error: ", "bold red"), _printable(message)), soft_wrap=True)
        raise typer.Exit(1)
    status = current_status(state_dir, order_id, entries)
    if as_json:
        for entry in entries:
            typer.echo(json.dumps(entry_json(entry), ensure_ascii=False))
        typer.echo(json.dumps(status_json(order_id, status), ensure_ascii=False))
        return
    console = _console()
    console.print(timeline_table(order_id, entries))
    for line in status_lines(status):
        console.print(Text(_printable(line)), soft_wrap=True)
