"""The transport ceiling, measured with raw aiokafka and no services in the way.

* Ping-pong: a responder (group consumer on ``bench.ping``) answers every ping by producing
  a pong to ``bench.pong``; the driver sends pings one at a time and waits for each pong
  (also read by a group consumer). A round trip is two hops (produce + consume, twice), so
  ``hop = round trip / 2``. Because everything runs in one process, the first hop is also
  timed directly (ping sent -> ping received by the responder) as a cross-check.
* Raw rates: ``count`` envelope-sized records are sent without awaiting each (then flushed),
  and read back by a group consumer.

Producers use the services' settings: idempotent, ``acks="all"``, ``linger_ms`` 2.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.stack import bench_topic
from bench.stats import summarize_ms
from contracts import Checkout, Money, envelope_for
from scripts.onboarding import MARKETPLACE_ID
from shared.broker import ensure_topics
from shared.broker_security import ADMIN, client_options

PING = bench_topic("bench.ping")
PONG = bench_topic("bench.pong")
RATE = bench_topic("bench.rate")
LINGER_MS = 2  # shared.settings.KafkaSettings.linger_ms default
MAX_RECORDS = 500  # shared.settings.KafkaSettings.max_batch_records default
WARMUP_PINGS = 20
TOPICS = (PING, PONG, RATE)


def new_producer(bootstrap_servers: str, client_id: str = "bench") -> AIOKafkaProducer:
    """A producer configured like the services' (shared.broker.create_broker)."""
    return AIOKafkaProducer(
        **client_options(ADMIN),  # the raw transport's own topics: the set-up's principal
        bootstrap_servers=bootstrap_servers,
        client_id=client_id,
        enable_idempotence=True,
        acks="all",
        linger_ms=LINGER_MS,
    )


def new_group_consumer(bootstrap_servers: str, topic: str, group: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        topic,
        **client_options(ADMIN),
        bootstrap_servers=bootstrap_servers,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )


def envelope_sized_payload() -> bytes:
    """A real Checkout envelope, the size of the records the services exchange."""
    checkout = Checkout(
        marketplace_id=MARKETPLACE_ID,
        order_id="bench-000000-phase-000000",
        buyer_id="bench-buyer-0000",
        seller_id="bench-seller-0000",
        amount=Money(amount_minor=100, currency="USD"),
        item="bench item",
    )
    envelope = envelope_for(checkout, correlation_id=checkout.order_id, idempotency_key="bench", source="bench")
    return envelope.model_dump_json().encode()


@dataclass(slots=True)
class _PingState:
    received_at: dict[bytes, float]


async def _respond(bootstrap_servers: str, group: str, state: _PingState) -> None:
    """Consume pings, answer each with a pong, then commit: one service-like hop per ping."""
    consumer = new_group_consumer(bootstrap_servers, PING.name, group)
    producer = new_producer(bootstrap_servers, "bench-responder")
    await consumer.start()
    await producer.start()
    try:
        while True:
            batches = await consumer.getmany(timeout_ms=50, max_records=MAX_RECORDS)
            now = time.perf_counter()
            records = [r for batch in batches.values() for r in batch]
            for record in records:
                state.received_at[record.key or b""] = now
                await producer.send_and_wait(PONG.name, record.value, key=record.key)
            if records:
                await consumer.commit()
    finally:
        await producer.stop()
        await consumer.stop()


async def ping_pong(bootstrap_servers: str, count: int, time_limit: float) -> dict[str, Any]:
    """Sequential pings; hop latency = round trip / 2 (see the module docstring)."""
    await ensure_topics(bootstrap_servers, (PING, PONG))
    run = uuid.uuid4().hex[:8]
    state = _PingState({})
    responder = asyncio.create_task(_respond(bootstrap_servers, f"bench-responder-{run}", state))
    producer = new_producer(bootstrap_servers, "bench-pinger")
    pongs = new_group_consumer(bootstrap_servers, PONG.name, f"bench-pinger-{run}")
    await producer.start()
    await pongs.start()
    round_trips: list[float] = []
    one_way: list[float] = []
    payload = envelope_sized_payload()
    deadline = time.monotonic() + time_limit
    try:
        for seq in range(WARMUP_PINGS + count):
            if time.monotonic() > deadline:
                break
            key = f"{run}-{seq}".encode()  # unique per run: an old pong on a reused broker never matches
            start = time.perf_counter()
            await producer.send_and_wait(PING.name, payload, key=key)
            end = await _await_pong(pongs, key, deadline)
            if end is None:
                break
            if seq >= WARMUP_PINGS:  # the first pings include group joins and metadata fetches
                round_trips.append(end - start)
                one_way.append(state.received_at[key] - start)
    finally:
        responder.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await responder
        await pongs.stop()
        await producer.stop()
    hops = [rtt / 2 for rtt in round_trips]
    return {
        "count": len(round_trips),
        "round_trip_ms": summarize_ms(round_trips),
        "hop_ms": summarize_ms(hops),
        "hop_definition": "round trip / 2; a round trip is ping produce+consume then pong produce+consume",
        "first_hop_one_way_ms": summarize_ms(one_way),
    }


async def _await_pong(consumer: AIOKafkaConsumer, key: bytes, deadline: float) -> float | None:
    while time.monotonic() < deadline:
        batches = await consumer.getmany(timeout_ms=50, max_records=MAX_RECORDS)
        now = time.perf_counter()
        records = [r for batch in batches.values() for r in batch]
        if records:
            await consumer.commit()
        if any(r.key == key for r in records):
            return now
    return None


async def produce_rate(bootstrap_servers: str, count: int, time_limit: float) -> dict[str, Any]:
    """Send ``count`` records without awaiting each, then wait for every ack."""
    await ensure_topics(bootstrap_servers, (RATE,))
    payload = envelope_sized_payload()
    producer = new_producer(bootstrap_servers, "bench-rate")
    await producer.start()
    sent = 0
    try:
        await producer.send_and_wait(RATE.name, payload, key=b"warmup")  # metadata + producer id
        start = time.perf_counter()
        deadline = time.monotonic() + time_limit
        acks: list[asyncio.Future[Any]] = []
        while sent < count and time.monotonic() < deadline:
            acks.append(await producer.send(RATE.name, payload, key=str(sent).encode()))
            sent += 1
        await producer.flush()
        await asyncio.gather(*acks)
        elapsed = time.perf_counter() - start
    finally:
        await producer.stop()
    return {
        "count": sent,
        "message_bytes": len(payload),
        "seconds": round(elapsed, 3),
        "msgs_per_s": round(sent / elapsed, 1),
        "mb_per_s": round(sent * len(payload) / elapsed / 1e6, 2),
    }


async def consume_rate(bootstrap_servers: str, count: int, time_limit: float) -> dict[str, Any]:
    """Read ``count`` records of the rate topic back with a group consumer (first to last record)."""
    consumer = new_group_consumer(bootstrap_servers, RATE.name, f"bench-reader-{uuid.uuid4().hex[:8]}")
    await consumer.start()
    received = 0
    first: float | None = None
    last = 0.0
    deadline = time.monotonic() + time_limit
    try:
        while received < count and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200, max_records=MAX_RECORDS)
            n = sum(len(batch) for batch in batches.values())
            if n:
                last = time.perf_counter()
                first = first or last
                received += n
                await consumer.commit()
    finally:
        await consumer.stop()
    elapsed = (last - first) if first is not None else 0.0
    return {
        "count": received,
        "seconds": round(elapsed, 3),
        "msgs_per_s": round(received / elapsed, 1) if elapsed > 0 else None,
        "note": "timed from the first record received to the last (group join excluded)",
    }


async def measure_transport(
    bootstrap_servers: str, *, pings: int, raw_count: int, time_limit: float = 60.0
) -> dict[str, Any]:
    """All transport figures; each part is bounded by ``time_limit`` seconds."""
    cpu_start = os.times()
    result: dict[str, Any] = {
        "ping_pong": await ping_pong(bootstrap_servers, pings, time_limit),
        "produce": await produce_rate(bootstrap_servers, raw_count, time_limit),
    }
    result["consume"] = await consume_rate(bootstrap_servers, result["produce"]["count"] + 1, time_limit)
    cpu_end = os.times()
    result["bench_cpu_seconds"] = round((cpu_end.user - cpu_start.user) + (cpu_end.system - cpu_start.system), 2)
    return result
