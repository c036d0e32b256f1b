"""Where an order's time goes, hop by hop: a few orders, one at a time, watched on every topic.

For every message of a traced order the bench knows when it was created (the envelope's
``occurred_at``, stamped by the producing service inside its handler, before its database
commit) and when it became readable (when the bench's own consumer, positioned on every
tradeguard topic, received it). Per hop, linked by ``causation_id``:

* ``handling_ms``  = created(message) - readable(its cause): the producing service's
  consumer fetch of the cause plus its handler, up to the ``emit``;
* ``publish_ms`` = readable(message) - created(message): database commit, outbox relay
  wake-up, select, produce and ack, and the bench consumer's fetch.

All processes run on one host, so wall clocks agree. Orders go one at a time, so this is
latency without load.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Self

from aiokafka import AIOKafkaConsumer

from bench.orders import PRICE, SOURCE, tail_consumer
from bench.stats import percentile
from bench.transport import new_producer
from contracts import (
    ALL_TOPICS,
    Checkout,
    ConfirmReceipt,
    Message,
    OrderStatus,
    OrderStatusChanged,
    RawEnvelope,
    envelope_for,
    parse_envelope,
)
from contracts.catalogue import CONSUMERS, REJECTIONS, party_actor
from contracts.topics import MESSAGE_TYPE_HEADER
from scripts.onboarding import MARKETPLACE_ID
from scripts.stack import client_keyring
from shared.signing import PRINCIPALS


@dataclass(frozen=True, slots=True)
class Observed:
    envelope: RawEnvelope
    topic: str
    readable_at: float  # time.time()

    @property
    def created_at(self) -> float:
        return self.envelope.occurred_at.timestamp()

    @property
    def label(self) -> str:
        if self.envelope.type == OrderStatusChanged.message_type:
            return f"OrderStatusChanged({self.envelope.payload.get('status')})"
        return self.envelope.type


class Tracer:
    """Sends traced orders one at a time and keeps every message about them."""

    def __init__(self, bootstrap_servers: str, run_id: str, buyer: str, seller: str) -> None:
        self._bootstrap = bootstrap_servers
        self._run_id = run_id
        self._buyer, self._seller = buyer, seller
        self._producer = new_producer(bootstrap_servers, "bench-tracer")
        self._consumer: AIOKafkaConsumer | None = None
        self.seen: dict[str, list[Observed]] = defaultdict(list)

    async def __aenter__(self) -> Self:
        await self._producer.start()
        self._consumer = await tail_consumer(self._bootstrap, ALL_TOPICS)
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
        await self._producer.stop()

    async def _publish(self, message: Message, order_id: str, key: str) -> None:
        envelope = envelope_for(
            message, correlation_id=order_id, idempotency_key=key, source=SOURCE, actor=party_actor(message)
        )
        record_key, value, kind = (
            message.partition_key.encode(),
            envelope.model_dump_json().encode(),
            message.message_type,
        )
        signature = client_keyring().sign("marketplace", message.topic.name, record_key, kind, value)
        await self._producer.send_and_wait(
            message.topic.name,
            value,
            key=record_key,
            headers=[(MESSAGE_TYPE_HEADER, kind.encode()), *signature],
        )

    async def _until_status(self, order_id: str, status: OrderStatus, timeout: float) -> None:
        assert self._consumer is not None
        async with asyncio.timeout(timeout):
            while not any(o.label == f"OrderStatusChanged({status.value})" for o in self.seen[order_id]):
                batches = await self._consumer.getmany(timeout_ms=20)
                now = time.time()
                for record in (r for batch in batches.values() for r in batch):
                    envelope = parse_envelope(record.value or b"")
                    if envelope.correlation_id.startswith(self._run_id):
                        self.seen[envelope.correlation_id].append(Observed(envelope, record.topic, now))

    async def order(self, n: int, timeout: float) -> str:
        order_id = f"{self._run_id}-trace-{n:04d}"
        checkout = Checkout(
            marketplace_id=MARKETPLACE_ID,
            order_id=order_id,
            buyer_id=self._buyer,
            seller_id=self._seller,
            amount=PRICE,
            item="traced",
        )
        await self._publish(checkout, order_id, f"checkout-{order_id}")
        await self._until_status(order_id, OrderStatus.IN_ESCROW, timeout)
        await self._publish(ConfirmReceipt(order_id=order_id, buyer_id=self._buyer), order_id, f"confirm-{order_id}")
        await self._until_status(order_id, OrderStatus.COMPLETED, timeout)
        return order_id


def hop_breakdown(orders: list[list[Observed]]) -> list[dict[str, Any]]:
    """Median/p95 handling and publish time per message label, in first-seen order."""
    handling: dict[str, list[float]] = defaultdict(list)
    publish: dict[str, list[float]] = defaultdict(list)
    sources: dict[str, str] = {}
    for observed in orders:
        by_id = {o.envelope.message_id: o for o in observed}
        for o in sorted(observed, key=lambda o: o.created_at):
            sources[o.label] = o.envelope.source
            publish[o.label].append(o.readable_at - o.created_at)
            cause = by_id.get(o.envelope.causation_id) if o.envelope.causation_id else None
            if cause is not None:
                handling[o.label].append(o.created_at - cause.readable_at)
    return [
        {
            "message": label,
            "producer": sources[label],
            "handling_ms_p50": _ms(percentile(handling[label], 50)) if handling[label] else None,
            "handling_ms_p95": _ms(percentile(handling[label], 95)) if handling[label] else None,
            "publish_ms_p50": _ms(percentile(publish[label], 50)),
            "publish_ms_p95": _ms(percentile(publish[label], 95)),
        }
        for label in publish
    ]


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


SIGNING_REPEATS = 200


def signing_cost(observed: list[Observed]) -> dict[str, Any]:
    """X9's price for one order, measured on its own records: each signed once by its producer
    (one MAC per consumer of its topic) and verified by every service that reads the topic (an
    upper bound: a service verifies only the types it handles), timed with the stack's keys."""
    ring = client_keyring()
    work = []
    for o in observed:
        signer = o.envelope.source if o.envelope.source in PRINCIPALS else "marketplace"
        value, key = o.envelope.model_dump_json().encode(), o.envelope.correlation_id.encode()
        readers = [r for r in CONSUMERS.get(o.topic, ()) if r in REJECTIONS]  # the services
        work.append((signer, o.topic, key, o.envelope.type, value, readers))
    started = time.perf_counter()
    macs = verifications = 0
    for _ in range(SIGNING_REPEATS):
        macs = verifications = 0
        for signer, topic, key, kind, value, readers in work:
            headers = [(MESSAGE_TYPE_HEADER, kind.encode()), *ring.sign(signer, topic, key, kind, value)]
            macs += len(headers) - 2
            for reader in readers:
                ring.verifier(reader).check(headers, message_type=kind, topic=topic, key=key, value=value)
                verifications += 1
    seconds = (time.perf_counter() - started) / SIGNING_REPEATS
    return {
        "records_per_order": len(work),
        "macs_made_per_order": macs,
        "verifications_per_order": verifications,
        "us_per_order": round(seconds * 1e6, 1),
    }


async def trace(
    bootstrap_servers: str, run_id: str, buyer: str, seller: str, *, count: int, timeout: float = 30.0
) -> dict[str, Any]:
    """Trace ``count`` orders one after another; see the module docstring."""
    async with Tracer(bootstrap_servers, run_id, buyer, seller) as tracer:
        traced = [await tracer.order(n, timeout) for n in range(count)]
    orders = [tracer.seen[order_id] for order_id in traced]
    e2e = [max(o.readable_at for o in obs) - min(o.readable_at for o in obs) for obs in orders]
    return {
        "orders": len(orders),
        "checkout_to_completed_ms_p50": _ms(percentile(e2e, 50)) if e2e else None,
        "hops": hop_breakdown(orders),
        "signing": signing_cost(orders[-1]) if orders else None,
        "definitions": {
            "handling_ms": "created(message) - readable(cause): service fetch + handler until emit",
            "publish_ms": "readable(message) - created(message): commit + outbox relay + produce + consumer fetch",
        },
    }
