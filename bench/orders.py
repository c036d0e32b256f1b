"""Drive orders through the happy path open-loop and record when each one gets where.

The driver publishes Checkout on a fixed schedule (it never waits for replies), watches
``tradeguard.order.events`` from its end on every partition (like scripts.marketplace's
EventWatcher) and answers ``OrderStatusChanged(in_escrow)`` at once with ConfirmReceipt,
so ``checkout -> completed`` includes the driver's (immediate) confirmation.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.stats import summarize_ms
from bench.transport import new_producer
from contracts import (
    Checkout,
    CommandRejected,
    ConfirmReceipt,
    FundWallet,
    Message,
    Money,
    OrderStatus,
    OrderStatusChanged,
    WalletFunded,
    envelope_for,
)
from contracts.catalogue import OPERATOR, party_actor
from contracts.topics import ACCOUNT_EVENTS, MESSAGE_TYPE_HEADER, ORDER_EVENTS, Topic
from scripts.marketplace import EventWatcher, Marketplace
from scripts.onboarding import MARKETPLACE_ID, Onboarding, Person, Phone
from scripts.stack import ServiceProcesses, client_keyring
from shared.broker_security import client_options
from shared.signing import Signer

# Sequential message hops on the happy path, each one produce + consume, as the flow goes:
HAPPY_PATH_HOPS: tuple[str, ...] = (
    "Checkout",  # bench -> saga
    "CapturePayment",  # saga -> payment
    "AuthorizePayment",  # payment -> account
    "PaymentAuthorized",  # account -> payment
    "PaymentCaptured",  # payment -> saga
    "HoldFunds",  # saga -> escrow
    "FundsHeld",  # escrow -> saga
    "OrderStatusChanged(in_escrow)",  # saga -> bench
    "ConfirmReceipt",  # bench -> saga
    "ReleaseFunds",  # saga -> escrow
    "FundsReleased",  # escrow -> saga
    "OrderStatusChanged(completed)",  # saga -> bench
)
# Produced for every order but off the path to completed: the saga pays the seller's wallet
# when it completes the order and does not wait for the answer.
OFF_PATH_MESSAGES: tuple[str, ...] = ("CreditWallet", "WalletCredited")
HOPS_TO_IN_ESCROW = HAPPY_PATH_HOPS.index("OrderStatusChanged(in_escrow)") + 1  # 8
HOPS_TO_COMPLETED = len(HAPPY_PATH_HOPS)  # 12

PRICE = Money(amount_minor=100, currency="USD")
BUYER_BALANCE = Money(amount_minor=10**13, currency="USD")  # far more than any run spends
SELLER_OPENING = Money(amount_minor=1, currency="USD")  # opens the seller's wallet up front
SOURCE = "bench"


@dataclass(slots=True)
class OrderTimes:
    """One order's milestones (time.perf_counter seconds)."""

    phase: str
    sent: float
    in_escrow: float | None = None
    completed: float | None = None
    failed: str | None = None

    @property
    def done(self) -> bool:
        return self.completed is not None or self.failed is not None


@dataclass(slots=True)
class Counters:
    sent: int = 0
    in_escrow: int = 0
    completed: int = 0
    failed: int = 0
    send_errors: int = 0

    @property
    def in_flight(self) -> int:
        return self.sent - self.completed - self.failed


@dataclass(slots=True)
class ScheduleResult:
    """How well the driver kept to its schedule (lateness = actual send - due time)."""

    sent: int
    seconds: float
    lateness: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "seconds": round(self.seconds, 3),
            "achieved_rate": round(self.sent / self.seconds, 2) if self.seconds > 0 else None,
            "lateness_ms": summarize_ms(self.lateness),
        }


def all_partitions(topics: Iterable[Topic]) -> list[TopicPartition]:
    return [TopicPartition(t.name, p) for t in topics for p in range(t.partitions)]


async def tail_consumer(bootstrap_servers: str, topics: Iterable[Topic]) -> AIOKafkaConsumer:
    """A group-less consumer positioned at the current end of every partition of ``topics``."""
    consumer = AIOKafkaConsumer(
        **client_options(OPERATOR), bootstrap_servers=bootstrap_servers, enable_auto_commit=False
    )
    await consumer.start()
    partitions = all_partitions(topics)
    consumer.assign(partitions)
    await consumer.seek_to_end(*partitions)
    for partition in partitions:  # resolve now, so nothing published later is missed
        await consumer.position(partition)
    return consumer


def _message_type(headers: Iterable[tuple[str, bytes]]) -> str | None:
    return next((v.decode() for k, v in headers if k == MESSAGE_TYPE_HEADER), None)


class OrderDriver:
    """Publishes commands and watches order events; ``orders`` holds every order's times."""

    def __init__(self, bootstrap_servers: str, run_id: str, accounts: int) -> None:
        self._bootstrap = bootstrap_servers
        self.run_id = run_id
        self.buyers = [f"{run_id}-buyer-{i:04d}" for i in range(accounts)]
        self.sellers = [f"{run_id}-seller-{i:04d}" for i in range(accounts)]
        self._producer = new_producer(bootstrap_servers, "bench-driver")
        self._watcher: AIOKafkaConsumer | None = None
        self._pump_task: asyncio.Task[None] | None = None
        self._next = 0
        self.orders: dict[str, OrderTimes] = {}
        self.counters = Counters()
        self.rejections: list[dict[str, Any]] = []
        self._signers: dict[str, Signer] = {}

    async def start(self) -> None:
        self._signer("marketplace")  # the stack's keys, once it has made them
        await self._producer.start()
        self._watcher = await tail_consumer(self._bootstrap, (ORDER_EVENTS,))
        self._pump_task = asyncio.create_task(self._pump(), name="bench-order-watcher")

    async def stop(self) -> None:
        if self._pump_task is not None:
            self._pump_task.cancel()
            await asyncio.gather(self._pump_task, return_exceptions=True)
        if self._watcher is not None:
            await self._watcher.stop()
        await self._producer.stop()

    def pause_watching(self) -> None:
        """Stop fetching order events (while the stack's idle CPU is measured: the broker
        would otherwise answer the bench's fetches); :meth:`resume_watching` goes on from there."""
        if self._watcher is not None:
            self._watcher.pause(*self._watcher.assignment())

    def resume_watching(self) -> None:
        if self._watcher is not None:
            self._watcher.resume(*self._watcher.assignment())

    def check_watcher(self) -> None:
        """Raise the watcher's error if it died."""
        if self._pump_task is not None and self._pump_task.done() and not self._pump_task.cancelled():
            self._pump_task.result()

    def _signer(self, principal: str) -> Signer:
        signer = self._signers.get(principal)
        if signer is None:
            signer = self._signers[principal] = client_keyring().signer(principal)
        return signer

    async def _send(
        self, message: Message, *, correlation_id: str, idempotency_key: str, principal: str = "marketplace"
    ) -> None:
        """Enqueue a command signed as ``principal`` without waiting for its ack (failed acks are counted)."""
        envelope = envelope_for(
            message,
            correlation_id=correlation_id,
            idempotency_key=idempotency_key,
            source=SOURCE,
            actor=party_actor(message),
        )
        key, value, kind = message.partition_key.encode(), envelope.model_dump_json().encode(), message.message_type
        signature = self._signer(principal).headers(message.topic.name, key, kind, value)
        ack = await self._producer.send(
            message.topic.name, value, key=key, headers=[(MESSAGE_TYPE_HEADER, kind.encode()), *signature]
        )
        ack.add_done_callback(self._count_send_error)

    def _count_send_error(self, ack: asyncio.Future[Any]) -> None:
        if ack.cancelled() or ack.exception() is not None:
            self.counters.send_errors += 1

    async def onboard_buyers(self, services: ServiceProcesses, timeout: float = 120.0) -> float:
        """Register every buyer, prove the phone and bind the wallet to the marketplace, as the
        product requires before a payment; returns the seconds it took."""
        start = time.perf_counter()
        people = [Person.numbered(buyer, n) for n, buyer in enumerate(self.buyers)]
        async with self.onboarding(services, timeout) as onboarding:
            await onboarding.many(people)
        return time.perf_counter() - start

    @contextlib.asynccontextmanager
    async def onboarding(self, services: ServiceProcesses, timeout: float) -> AsyncIterator[Onboarding]:
        """Onboarding as the marketplace does it, against ``services``."""
        async with (
            EventWatcher(self._bootstrap, (ACCOUNT_EVENTS,)) as watcher,
            Marketplace(self._bootstrap, source=SOURCE) as market,
        ):
            yield Onboarding(
                market,
                watcher,
                Phone(services.sms_outbox),
                services.sealing_key(),
                timeout=timeout,
                payment_url=services.payment_url,
            )

    async def fund_accounts(self, timeout: float = 120.0) -> float:
        """Top up every buyer (and open every seller's wallet); returns seconds until all were funded."""
        events = await tail_consumer(self._bootstrap, (ACCOUNT_EVENTS,))
        start = time.perf_counter()
        try:
            for account, amount in [(b, BUYER_BALANCE) for b in self.buyers] + [
                (s, SELLER_OPENING) for s in self.sellers
            ]:
                await self._send(
                    FundWallet(account_id=account, amount=amount),
                    correlation_id=account,
                    idempotency_key=f"fund-{account}",
                )
            await self._producer.flush()
            waiting = set(self.buyers) | set(self.sellers)
            async with asyncio.timeout(timeout):
                while waiting:
                    batches = await events.getmany(timeout_ms=200, max_records=1000)
                    for record in (r for batch in batches.values() for r in batch):
                        if _message_type(record.headers) == WalletFunded.message_type:
                            waiting.discard(json.loads(record.value)["payload"]["account_id"])
        finally:
            await events.stop()
        return time.perf_counter() - start

    async def run_schedule(self, phase: str, rate: float, duration: float) -> ScheduleResult:
        """Publish ``rate * duration`` Checkouts, one every ``1/rate`` s, never waiting for replies."""
        total = max(1, round(rate * duration))
        result = ScheduleResult(sent=0, seconds=0.0)
        start = time.perf_counter()
        for i in range(total):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            result.lateness.append(max(0.0, time.perf_counter() - due))
            await self._checkout(phase)
            result.sent += 1
        result.seconds = time.perf_counter() - start
        await self._producer.flush()
        return result

    def order_id(self, phase: str, n: int) -> str:
        """The id of the ``n``-th order the driver checks out (in ``phase``)."""
        return f"{self.run_id}-{phase}-{n:07d}"

    async def _checkout(self, phase: str) -> None:
        n = self._next
        self._next += 1
        order_id = self.order_id(phase, n)
        checkout = Checkout(
            marketplace_id=MARKETPLACE_ID,
            order_id=order_id,
            buyer_id=self.buyers[n % len(self.buyers)],
            seller_id=self.sellers[n % len(self.sellers)],
            amount=PRICE,
            item="bench item",
        )
        self.orders[order_id] = OrderTimes(phase, time.perf_counter())
        self.counters.sent += 1
        await self._send(checkout, correlation_id=order_id, idempotency_key=f"checkout-{order_id}")

    async def drain(self, phase: str, timeout: float) -> float | None:
        """Seconds until every order of ``phase`` finished, or None if some did not within ``timeout``."""
        start = time.perf_counter()
        pending = [o for o in self.orders.values() if o.phase == phase and not o.done]
        while pending:
            if time.perf_counter() - start > timeout:
                return None
            self.check_watcher()
            await asyncio.sleep(0.05)
            pending = [o for o in pending if not o.done]
        return time.perf_counter() - start

    async def _pump(self) -> None:
        assert self._watcher is not None
        while True:
            batches = await self._watcher.getmany(timeout_ms=100, max_records=1000)
            now = time.perf_counter()
            for record in (r for batch in batches.values() for r in batch):
                await self._on_event(_message_type(record.headers), record.value, now)

    async def _on_event(self, message_type: str | None, value: bytes | None, now: float) -> None:
        if message_type == OrderStatusChanged.message_type:
            payload = json.loads(value or b"{}")["payload"]
            order = self.orders.get(payload["order_id"])
            if order is not None:
                await self._on_status(payload, order, now)
        elif message_type == CommandRejected.message_type:
            payload = json.loads(value or b"{}")["payload"]
            order = self.orders.get(payload.get("subject_id", ""))
            if order is not None:
                self.rejections.append(payload)
                self._fail(order, f"rejected {payload.get('rejected_type')}: {payload.get('code')}")

    async def _on_status(self, payload: dict[str, Any], order: OrderTimes, now: float) -> None:
        status = payload["status"]
        if status == OrderStatus.IN_ESCROW and order.in_escrow is None:
            order.in_escrow = now
            self.counters.in_escrow += 1
            await self._send(
                ConfirmReceipt(order_id=payload["order_id"], buyer_id=payload["buyer_id"]),
                correlation_id=payload["order_id"],
                idempotency_key=f"confirm-{payload['order_id']}",
            )
        elif status == OrderStatus.COMPLETED and order.completed is None and order.failed is None:
            order.completed = now
            self.counters.completed += 1
        elif status == OrderStatus.CANCELLED:
            self._fail(order, f"cancelled: {payload.get('reason')}")

    def _fail(self, order: OrderTimes, reason: str) -> None:
        if not order.done:
            order.failed = reason
            self.counters.failed += 1

    def phase_orders(self, phase: str) -> list[OrderTimes]:
        return [o for o in self.orders.values() if o.phase == phase]


def latency_summary(orders: list[OrderTimes]) -> dict[str, Any]:
    """checkout -> in_escrow and checkout -> completed, in ms."""
    to_escrow = [o.in_escrow - o.sent for o in orders if o.in_escrow is not None]
    to_completed = [o.completed - o.sent for o in orders if o.completed is not None]
    return {"to_in_escrow_ms": summarize_ms(to_escrow), "to_completed_ms": summarize_ms(to_completed)}
