"""A marketplace's typed async client of TradeGuard's topics.

    async with TradeGuardClient.from_profile("tradeguard.json") as tradeguard:
        order = await tradeguard.checkout(buyer_id="buyer-1", seller_id="seller-9",
                                          amount=Money(amount_minor=12999, currency="USD"))
        await order.wait_for(OrderStatus.IN_ESCROW)
        await order.confirm_receipt()
        await order.wait_for(OrderStatus.COMPLETED)

One producer and one reader per client, opened once and closed with it. Every command is a
contract model, so a wrong field fails *before* anything is sent (pydantic's ValidationError,
naming the field); each gets an idempotency key unless given one, the buyer's consent (the
envelope's actor, SPEC X9) and its producer's MACs (``contracts.signatures``). The reader reads
the order events topic from where it stood when the client opened, checks each record's MAC and
hands each order's events to its :class:`Order`: an order's events are seen from when its handle
is made (``checkout`` makes it before sending).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import uuid
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from contracts import (
    Checkout,
    Command,
    CommandRejected,
    ConfirmReceipt,
    DisputeReason,
    Envelope,
    InvalidMessage,
    Message,
    Money,
    OpenDispute,
    OrderStatus,
    OrderStatusChanged,
    RequestRefund,
    SealingKey,
    SecurityMethod,
    decode_message,
)
from contracts.catalogue import party_actor
from contracts.envelope import Actor, envelope_for
from contracts.sealing import Purpose
from contracts.signatures import SignatureRefused, Signer, Verifier, load_principal
from contracts.topics import MESSAGE_TYPE_HEADER, ORDER_EVENTS
from tradeguard_client.profile import ConnectionProfile

log = logging.getLogger("tradeguard_client")

FINAL_STATUSES = frozenset({OrderStatus.COMPLETED, OrderStatus.CANCELLED, OrderStatus.REFUNDED})
"""An order in one of these moves no more."""
DEFAULT_TIMEOUT = 30.0
"""Seconds a wait lasts unless told otherwise."""


class ClientError(Exception):
    """Root of this client's errors."""


class CommandRefused(ClientError):
    """TradeGuard refused a command this client sent (its CommandRejected's code and reason)."""

    def __init__(self, rejection: CommandRejected) -> None:
        super().__init__(f"{rejection.rejected_type} refused: {rejection.code}: {rejection.reason}")
        self.rejection = rejection
        self.code = rejection.code
        self.reason = rejection.reason


class OrderEnded(ClientError):
    """The order reached a final status other than the one awaited: it will never get there."""

    def __init__(self, order_id: str, wanted: OrderStatus, reached: OrderStatusChanged) -> None:
        why = f" ({reached.reason})" if reached.reason else ""
        super().__init__(f"order {order_id} ended {reached.status.value}{why} while waiting for {wanted.value}")
        self.order_id = order_id
        self.wanted = wanted
        self.reached = reached


class ClientClosed(ClientError):
    """The client was used before it was opened, or after it was closed."""


@dataclass(frozen=True, slots=True)
class OrderEvent:
    """One message about an order, as it came off the topic (its MAC checked)."""

    envelope: Envelope[Any]

    @property
    def message(self) -> Message:
        payload: Message = self.envelope.payload
        return payload


@dataclass(frozen=True, slots=True)
class Sent:
    """A command as it was sent: its envelope's ids say which events answer it."""

    envelope: Envelope[Any]

    @property
    def message_id(self) -> uuid.UUID:
        return self.envelope.message_id

    @property
    def idempotency_key(self) -> str:
        return self.envelope.idempotency_key


class Order:
    """One order's events as this client sees them, and the commands a marketplace sends about it."""

    def __init__(self, client: TradeGuardClient, order_id: str, buyer_id: str | None = None) -> None:
        self.order_id = order_id
        self.buyer_id = buyer_id
        self.checkout: Sent | None = None
        self._client = client
        self.seen: list[OrderEvent] = []
        self._changed = asyncio.Condition()

    @property
    def status(self) -> OrderStatus | None:
        """The last status seen (None before the first)."""
        changes = [e.message for e in self.seen if isinstance(e.message, OrderStatusChanged)]
        return changes[-1].status if changes else None

    async def wait_for(self, status: OrderStatus, timeout: float = DEFAULT_TIMEOUT) -> OrderStatusChanged:
        """The order's first move to ``status``. :class:`CommandRefused` when its checkout was refused,
        :class:`OrderEnded` when it ends in another final status, TimeoutError when neither comes in time."""

        def reached(event: OrderEvent) -> bool:
            message = event.message
            if isinstance(message, CommandRejected) and self._refuses_checkout(message):
                raise CommandRefused(message)
            if isinstance(message, OrderStatusChanged):
                if message.status is status:
                    return True
                if message.status in FINAL_STATUSES:
                    raise OrderEnded(self.order_id, status, message)
            return False

        event = await self._first(reached, timeout, f"reach {status.value}")
        assert isinstance(event.message, OrderStatusChanged)
        return event.message

    async def answer(self, sent: Sent, timeout: float = DEFAULT_TIMEOUT) -> Message:
        """The first event ``sent`` caused; :class:`CommandRefused` if that is its refusal."""
        event = await self._first(
            lambda e: e.envelope.causation_id == sent.message_id, timeout, f"answer {sent.envelope.type}"
        )
        if isinstance(event.message, CommandRejected):
            raise CommandRefused(event.message)
        return event.message

    async def events(self, timeout: float | None = None) -> AsyncIterator[OrderEvent]:
        """Every event of the order, from the first seen, as they come; ends after a final status
        (or, with ``timeout``, when no event came for that many seconds: TimeoutError)."""
        index = 0
        while True:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(functools.partial(self._seen_more_than, index))
                batch, index = self.seen[index:], len(self.seen)
            for event in batch:
                yield event
                message = event.message
                if isinstance(message, OrderStatusChanged) and message.status in FINAL_STATUSES:
                    return

    async def confirm_receipt(self, *, idempotency_key: str | None = None) -> Sent:
        """The buyer confirms the goods arrived: escrow releases the funds to the seller."""
        return await self._client.confirm_receipt(self.order_id, self._buyer(), idempotency_key=idempotency_key)

    async def request_refund(
        self, amount: Money, *, reason: str = "", refund_id: str | None = None, idempotency_key: str | None = None
    ) -> Sent:
        """Give ``amount`` of the price back to the buyer while the order is in escrow."""
        return await self._client.request_refund(
            self.order_id, amount, reason=reason, refund_id=refund_id, idempotency_key=idempotency_key
        )

    async def open_dispute(
        self,
        reason: DisputeReason,
        description: str = "",
        *,
        dispute_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> Sent:
        """The buyer contests the order: escrow freezes the funds until the dispute is resolved."""
        return await self._client.open_dispute(
            self.order_id,
            self._buyer(),
            reason,
            description,
            dispute_id=dispute_id,
            idempotency_key=idempotency_key,
        )

    def _buyer(self) -> str:
        if self.buyer_id is None:
            raise ClientError(f"the buyer of order {self.order_id} is not known here: pass it to client.order()")
        return self.buyer_id

    def _seen_more_than(self, count: int) -> bool:
        return len(self.seen) > count

    def _refuses_checkout(self, rejection: CommandRejected) -> bool:
        return self.checkout is not None and rejection.rejected_message_id == self.checkout.message_id

    async def _first(self, matches: Any, timeout: float, what: str) -> OrderEvent:
        scanned = 0
        found: list[OrderEvent] = []

        def matched() -> bool:
            nonlocal scanned
            while scanned < len(self.seen):
                event = self.seen[scanned]
                scanned += 1
                if matches(event):
                    found.append(event)
                    return True
            return False

        try:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(matched)
        except TimeoutError:
            last = self.status.value if self.status else "none seen"
            raise TimeoutError(f"order {self.order_id} did not {what} within {timeout:g} s (status: {last})") from None
        return found[0]

    async def _arrived(self, event: OrderEvent) -> None:
        async with self._changed:
            self.seen.append(event)
            self._changed.notify_all()

    def __repr__(self) -> str:
        return f"Order({self.order_id!r}, status={self.status})"


class TradeGuardClient:
    """Sends a marketplace's commands and follows its orders (open it with ``async with``)."""

    def __init__(self, profile: ConnectionProfile, *, source: str = "marketplace") -> None:
        self.profile = profile
        self.source = source
        signer, verifier = load_principal(profile.signing_key_file)
        self._signer: Signer = signer
        self._verifier: Verifier | None = verifier
        self._sealing_key = SealingKey.from_file(profile.sealing_key_file) if profile.sealing_key_file else None
        self._producer: AIOKafkaProducer | None = None
        self._reader: AIOKafkaConsumer | None = None
        self._pump: asyncio.Task[None] | None = None
        self._orders: weakref.WeakValueDictionary[str, Order] = weakref.WeakValueDictionary()
        self.refused_records = 0
        """Records read whose MAC did not verify (or that were not messages): skipped, logged."""

    @classmethod
    def from_profile(cls, path: str | Path | None = None) -> TradeGuardClient:
        """A client of the stack ``path`` (default ``$TRADEGUARD_PROFILE``) describes."""
        return cls(ConnectionProfile.load(path))

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Connect: the producer, and the reader at the end of the order events topic."""
        options = self.profile.kafka_options()
        self._producer = AIOKafkaProducer(**options, acks="all", enable_idempotence=True)
        self._reader = AIOKafkaConsumer(**options, enable_auto_commit=False)
        try:
            await self._producer.start()
            await self._reader.start()
            partitions = [TopicPartition(ORDER_EVENTS.name, p) for p in range(ORDER_EVENTS.partitions)]
            self._reader.assign(partitions)
            await self._reader.seek_to_end(*partitions)
            for partition in partitions:  # positions resolved now: nothing published later is missed
                await self._reader.position(partition)
        except BaseException:
            await self.close()
            raise
        self._pump = asyncio.create_task(self._read())

    async def close(self) -> None:
        """Stop reading and flush what is being sent; safe to call twice."""
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
            self._pump = None
        producer, reader, self._producer, self._reader = self._producer, self._reader, None, None
        if producer is not None:
            await producer.stop()
        if reader is not None:
            await reader.stop()

    # ------------------------------------------------------------------ commands

    async def checkout(
        self,
        *,
        buyer_id: str,
        seller_id: str,
        amount: Money,
        item: str = "",
        order_id: str | None = None,
        source_id: str | None = None,
        use_balance_first: bool = False,
        pin: str | None = None,
        quote_id: str | None = None,
        shipping_method: str | None = None,
        idempotency_key: str | None = None,
    ) -> Order:
        """Collect ``amount`` from the buyer (the wallet, or ``source_id``) and hold it in escrow.
        ``pin``: the buyer's payment PIN, for a payment above the region's threshold (sealed here
        for this order only). The order's handle; wait on it for the outcome."""
        order_id = order_id or f"order-{uuid.uuid4().hex[:16]}"
        command = Checkout(
            order_id=order_id,
            buyer_id=buyer_id,
            seller_id=seller_id,
            amount=amount,
            item=item,
            marketplace_id=self.profile.marketplace_id,
            source_id=source_id,
            use_balance_first=use_balance_first,
            quote_id=quote_id,
            shipping_method=shipping_method,
            **self._payment_proof(order_id, pin),
        )
        order = self.order(order_id, buyer_id)
        order.checkout = await self.send(command, idempotency_key=idempotency_key or f"checkout:{order_id}")
        return order

    async def confirm_receipt(self, order_id: str, buyer_id: str, *, idempotency_key: str | None = None) -> Sent:
        """The buyer confirms the goods arrived: escrow releases the funds to the seller."""
        return await self.send(ConfirmReceipt(order_id=order_id, buyer_id=buyer_id), idempotency_key=idempotency_key)

    async def request_refund(
        self,
        order_id: str,
        amount: Money,
        *,
        reason: str = "",
        refund_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> Sent:
        """Give ``amount`` (in the order's currency) back to the buyer while the order is in escrow."""
        refund_id = refund_id or f"refund-{uuid.uuid4().hex[:16]}"
        command = RequestRefund(order_id=order_id, refund_id=refund_id, amount=amount, reason=reason)
        return await self.send(command, idempotency_key=idempotency_key or f"refund:{order_id}:{refund_id}")

    async def open_dispute(
        self,
        order_id: str,
        buyer_id: str,
        reason: DisputeReason,
        description: str = "",
        *,
        dispute_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> Sent:
        """The buyer contests an order in escrow: the funds freeze until the dispute is resolved."""
        dispute_id = dispute_id or f"dispute-{uuid.uuid4().hex[:16]}"
        command = OpenDispute(
            order_id=order_id, dispute_id=dispute_id, buyer_id=buyer_id, reason=reason, description=description
        )
        return await self.send(command, idempotency_key=idempotency_key or f"dispute:{order_id}:{dispute_id}")

    async def send(
        self,
        command: Command,
        *,
        correlation_id: str | None = None,
        idempotency_key: str | None = None,
        actor: Actor | None = None,
    ) -> Sent:
        """Publish any command a marketplace may send, signed, on its topic and key. The actor is
        the party the command names (the buyer of a ``ConfirmReceipt``) unless ``actor`` says
        whom the marketplace acts for."""
        producer = self._producer
        if producer is None:
            raise ClientClosed("open the client first: `async with TradeGuardClient(...) as client`")
        envelope = envelope_for(
            command,
            correlation_id=correlation_id or command.partition_key,
            idempotency_key=idempotency_key or f"{command.message_type}:{uuid.uuid4().hex}",
            source=self.source,
            actor=actor or party_actor(command),
        )
        value = envelope.model_dump_json().encode()
        key = command.partition_key.encode()
        kind = command.message_type.encode()
        headers = [(MESSAGE_TYPE_HEADER, kind), *self._signer.headers(command.topic.name, key, kind, value)]
        await producer.send_and_wait(command.topic.name, value, key=key, headers=headers)
        return Sent(envelope)

    def order(self, order_id: str, buyer_id: str | None = None) -> Order:
        """The handle of ``order_id``: its events from now on (the same handle while one is held)."""
        order = self._orders.get(order_id)
        if order is None:
            order = self._orders[order_id] = Order(self, order_id, buyer_id)
        elif buyer_id is not None:
            order.buyer_id = buyer_id
        return order

    def _payment_proof(self, order_id: str, pin: str | None) -> dict[str, Any]:
        if pin is None:
            return {}
        if self._sealing_key is None:
            raise ClientError("a PIN needs the account service's sealing key: the profile names none")
        proof = self._sealing_key.seal(pin, purpose=Purpose.payment(order_id))
        return {"security_method": SecurityMethod.PIN, "security_proof": proof}

    # ------------------------------------------------------------------ reading

    async def _read(self) -> None:
        reader = self._reader
        assert reader is not None
        while True:
            batches = await reader.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    await self._take(record)

    async def _take(self, record: ConsumerRecord[bytes, bytes]) -> None:
        try:
            envelope = decode_message(record.value or b"")
            if self._verifier is not None:
                self._verifier.check(
                    record.headers, message_type=envelope.type, topic=record.topic, key=record.key, value=record.value
                )
        except (InvalidMessage, SignatureRefused) as refused:
            self.refused_records += 1
            log.warning("skipped a record on %s (offset %s): %s", record.topic, record.offset, refused)
            return
        payload = envelope.payload
        order_id = getattr(payload, "order_id", None) or getattr(payload, "subject_id", None)
        order = self._orders.get(order_id) if isinstance(order_id, str) else None
        if order is not None:
            await order._arrived(OrderEvent(envelope))
