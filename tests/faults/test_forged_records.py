"""X9 (issue 18): the three forgeries of the issue, against the real broker and the five services
as processes, each sent the way a client holding no service's key would send it. Each is
dead-lettered by the service that would have acted on it, with a reason naming the fault, and
no money moves: the order's real outcome wins, the escrow stays held, no wallet is credited.
A signed command changed in one byte after signing is dead-lettered too."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from contracts import (
    Actor,
    ActorRole,
    Checkout,
    CommandRejected,
    ConfirmReceipt,
    CreditWallet,
    FundsReleased,
    FundWallet,
    Message,
    Money,
    OrderStatus,
    OrderStatusChanged,
    PaymentCaptured,
    PaymentFailed,
    WalletCredited,
    WalletFunded,
)
from contracts.catalogue import OPERATOR
from contracts.envelope import envelope_for
from contracts.topics import (
    DEAD_LETTER,
    DEAD_LETTER_CLASS,
    DEAD_LETTER_CONSUMER,
    DEAD_LETTER_REASON,
    DEAD_LETTER_SOURCE,
    MESSAGE_TYPE_HEADER,
)
from scripts.cli.timeline import fetch_saga_order
from scripts.marketplace import EventWatcher, Marketplace, RawRecord, Seen
from scripts.onboarding import MARKETPLACE_ID, Onboarding, Person
from scripts.stack import ServiceProcesses
from shared.broker_security import client_options
from shared.signing import Keyring
from tests.support.eventually import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.kafka, pytest.mark.slow]

SQLITE_PREFIX = "sqlite+aiosqlite:///"
PRICE = 7000


def usd(minor: int) -> Money:
    return Money(amount_minor=minor, currency="USD")


@pytest.fixture
async def producer(stack: ServiceProcesses) -> AsyncIterator[AIOKafkaProducer]:
    """A client of the broker that may write every topic (the operators' principal: an insider, or
    stolen operator credentials) but holds no service's signing key."""
    client = AIOKafkaProducer(**client_options(OPERATOR), bootstrap_servers=stack.bootstrap_servers, acks="all")
    await client.start()
    yield client
    await client.stop()


class Forger:
    """Sends messages signed as a principal whose key it holds (or unsigned), whatever their type."""

    def __init__(self, producer: AIOKafkaProducer, keyring: Keyring) -> None:
        self._producer = producer
        self._keyring = keyring

    def record(
        self, message: Message, signer: str | None, occurred_at: datetime | None = None
    ) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
        envelope = envelope_for(
            message,
            correlation_id=f"forged-{uuid.uuid4().hex[:8]}",
            idempotency_key=f"forged-{uuid.uuid4()}",
            source=signer or "mallory",
            occurred_at=occurred_at,
        )
        key, value, kind = message.partition_key.encode(), envelope.model_dump_json().encode(), message.message_type
        headers = [(MESSAGE_TYPE_HEADER, kind.encode())]
        if signer is not None:
            headers.extend(self._keyring.sign(signer, message.topic.name, key, kind, value))
        return key, value, headers

    async def send(self, topic: str, key: bytes, value: bytes, headers: list[tuple[str, bytes]]) -> bytes:
        """Publish; returns the record's place (topic/partition/offset), as a dead letter names it."""
        written = await self._producer.send_and_wait(topic, value, key=key, headers=headers)
        return f"{topic}/{written.partition}/{written.offset}".encode()

    async def forge(self, message: Message, signer: str | None) -> bytes:
        return await self.send(message.topic.name, *self.record(message, signer))


@pytest.fixture
def forger(producer: AIOKafkaProducer, keyring: Keyring) -> Forger:
    return Forger(producer, keyring)


def dead_letter_of(source: bytes, consumer: str) -> Callable[[RawRecord], bool]:
    """``consumer``'s dead letter of the record at ``source`` (another reader of the topic, such
    as the notification service, may dead-letter it too)."""

    def matches(record: RawRecord) -> bool:
        return (
            record.topic == DEAD_LETTER.name
            and record.headers.get(DEAD_LETTER_SOURCE) == source
            and record.headers.get(DEAD_LETTER_CONSUMER) == consumer.encode()
        )

    return matches


async def refused(watcher: EventWatcher, source: bytes, consumer: str, reason: str) -> RawRecord:
    """The forged record's dead letter: by the service named, for the reason named."""
    letter = await watcher.wait_for_record(dead_letter_of(source, consumer), timeout=60)
    assert letter.headers[DEAD_LETTER_CLASS] == b"record"
    assert reason in letter.headers[DEAD_LETTER_REASON].decode(), letter.headers[DEAD_LETTER_REASON]
    return letter


def answer_to(message_id: uuid.UUID, kind: type[Message]) -> Callable[[Seen], bool]:
    return lambda seen: isinstance(seen.message, kind) and seen.envelope.causation_id == message_id


def status_of(order_id: str, *statuses: OrderStatus) -> Callable[[Seen], bool]:
    def matches(seen: Seen) -> bool:
        m = seen.message
        return isinstance(m, OrderStatusChanged) and m.order_id == order_id and m.status in statuses

    return matches


def statuses(watcher: EventWatcher, order_id: str) -> list[OrderStatus]:
    return [s.message.status for s in watcher.about(order_id) if isinstance(s.message, OrderStatusChanged)]


def wallets(service_db: Mapping[str, str], *accounts: str) -> dict[str, int]:
    connection = sqlite3.connect(service_db["account"].removeprefix(SQLITE_PREFIX), timeout=30)
    try:
        marks = ",".join("?" * len(accounts))
        rows = connection.execute(
            f"SELECT account_id, balance_minor FROM wallets WHERE account_id IN ({marks})", accounts
        ).fetchall()
    finally:
        connection.close()
    return {str(account): int(balance) for account, balance in rows}


async def saga_order(stack: ServiceProcesses, order_id: str) -> dict[str, Any]:
    order = await asyncio.to_thread(fetch_saga_order, stack.saga_url, order_id)
    assert order is not None, order_id
    return order


async def refusals_counted(base_url: str, reason: str) -> float:
    """The service's tradeguard_signatures_refused_total for ``reason`` (its /metrics page)."""
    async with httpx.AsyncClient() as client:
        page = (await client.get(f"{base_url}/metrics", timeout=10)).text
    sample = f'tradeguard_signatures_refused_total{{reason="{reason}"}} '
    lines = [line for line in page.splitlines() if line.startswith(sample)]
    return float(lines[0].removeprefix(sample)) if lines else 0.0


def people(run: str) -> tuple[Person, str, str]:
    buyer = Person.numbered(f"buyer-{run}", int(run, 16) % 10**8)
    return buyer, f"seller-{run}", f"order-{run}"


async def test_x9_a_payment_captured_forged_by_a_client_is_dead_lettered_and_the_real_decline_wins(  # noqa: PLR0917 - pytest passes fixtures by position
    stack: ServiceProcesses,
    market: Marketplace,
    watcher: EventWatcher,
    onboarding: Onboarding,
    forger: Forger,
    service_db: dict[str, str],
) -> None:
    run = uuid.uuid4().hex[:10]
    buyer, seller, order_id = people(run)
    await onboarding.buyer(buyer)  # never funded: the real payment is declined
    checkout = Checkout(
        marketplace_id=MARKETPLACE_ID, order_id=order_id, buyer_id=buyer.account_id, seller_id=seller, amount=usd(PRICE)
    )
    await market.publish(checkout, correlation_id=order_id, idempotency_key=f"checkout-{run}")
    await watcher.wait_for(status_of(order_id, OrderStatus.PAYMENT_PENDING), timeout=60)

    # The client says the order was paid: once signed with the marketplace's own key, once unsigned.
    capture = PaymentCaptured(order_id=order_id, buyer_id=buyer.account_id, amount=usd(PRICE))
    as_marketplace = await forger.forge(capture, "marketplace")
    unsigned = await forger.forge(capture, None)
    await refused(watcher, as_marketplace, "saga", "signed by 'marketplace', who may not send PaymentCaptured")
    await refused(watcher, unsigned, "saga", "signature unsigned: the record has no tg-signer")

    failed = await watcher.wait_for(
        lambda s: isinstance(s.message, PaymentFailed) and s.message.order_id == order_id, timeout=60
    )
    assert failed.envelope.source == "payment"
    await watcher.wait_for(status_of(order_id, OrderStatus.PAYMENT_FAILED, OrderStatus.CANCELLED), timeout=60)
    assert OrderStatus.IN_ESCROW not in statuses(watcher, order_id)
    assert OrderStatus.PAID not in statuses(watcher, order_id)
    assert (await saga_order(stack, order_id))["status"] in (OrderStatus.PAYMENT_FAILED, OrderStatus.CANCELLED)
    assert wallets(service_db, seller).get(seller, 0) == 0


async def test_x9_a_confirm_receipt_from_a_principal_that_may_not_send_it_is_dead_lettered_and_escrow_stays_held(  # noqa: PLR0917 - pytest passes fixtures by position
    stack: ServiceProcesses,
    market: Marketplace,
    watcher: EventWatcher,
    onboarding: Onboarding,
    forger: Forger,
    service_db: dict[str, str],
) -> None:
    run = uuid.uuid4().hex[:10]
    buyer, seller, order_id = people(run)
    await onboarding.buyer(buyer)
    await market.publish(
        FundWallet(account_id=buyer.account_id, amount=usd(PRICE)), correlation_id=order_id, idempotency_key=f"f-{run}"
    )
    checkout = Checkout(
        marketplace_id=MARKETPLACE_ID, order_id=order_id, buyer_id=buyer.account_id, seller_id=seller, amount=usd(PRICE)
    )
    await market.publish(checkout, correlation_id=order_id, idempotency_key=f"checkout-{run}")
    await watcher.wait_for(status_of(order_id, OrderStatus.IN_ESCROW, OrderStatus.CANCELLED), timeout=60)
    assert (await saga_order(stack, order_id))["status"] == OrderStatus.IN_ESCROW
    counted = await refusals_counted(stack.saga_url, "not_allowed")

    # The buyer's confirmation, sent by a service's principal (escrow): not the buyer's marketplace.
    forged = await forger.forge(ConfirmReceipt(order_id=order_id, buyer_id=buyer.account_id), "escrow")
    await refused(watcher, forged, "saga", "signed by 'escrow', who may not send ConfirmReceipt")

    assert (await saga_order(stack, order_id))["status"] == OrderStatus.IN_ESCROW  # decided: the dead letter is out
    assert not [s for s in watcher.about(order_id) if isinstance(s.message, FundsReleased)]
    assert wallets(service_db, seller).get(seller, 0) == 0
    assert await refusals_counted(stack.saga_url, "not_allowed") == counted + 1

    # Through the marketplace, but for the seller's session, or for no one: the buyer's consent is missing.
    confirm = ConfirmReceipt(order_id=order_id, buyer_id=buyer.account_id)
    for actor, code in (
        (Actor(account_id=seller, role=ActorRole.SELLER), "consent_mismatch"),
        (None, "consent_missing"),
    ):
        sent = await market.publish(confirm, correlation_id=order_id, idempotency_key=f"{code}-{run}", actor=actor)
        rejected = await watcher.wait_for(answer_to(sent.message_id, CommandRejected))
        assert rejected.message.code == code  # type: ignore[attr-defined]
    assert (await saga_order(stack, order_id))["status"] == OrderStatus.IN_ESCROW
    assert wallets(service_db, seller).get(seller, 0) == 0

    # The buyer's own confirmation, through the marketplace, still releases it: once.
    await market.publish(
        ConfirmReceipt(order_id=order_id, buyer_id=buyer.account_id), correlation_id=order_id, idempotency_key=run
    )
    await watcher.wait_for(status_of(order_id, OrderStatus.COMPLETED), timeout=60)
    balances = await eventually(
        lambda: asyncio.to_thread(wallets, service_db, seller), lambda found: found.get(seller) == PRICE
    )
    assert balances == {seller: PRICE}


async def test_x9_a_credit_wallet_forged_by_the_marketplace_is_dead_lettered_and_no_wallet_is_credited(
    stack: ServiceProcesses, watcher: EventWatcher, forger: Forger, service_db: dict[str, str]
) -> None:
    account = f"fresh-{uuid.uuid4().hex[:10]}"
    credit = CreditWallet(account_id=account, order_id=f"order-none-{account}", amount=usd(100_000_000))
    as_marketplace = await forger.forge(credit, "marketplace")
    await refused(watcher, as_marketplace, "account", "signed by 'marketplace', who may not send CreditWallet")

    assert wallets(service_db, account) == {}
    assert not [s for s in watcher.seen if isinstance(s.message, WalletCredited) and s.message.account_id == account]
    stack.check_alive()


async def test_x9_a_signed_command_changed_in_one_byte_is_dead_lettered(
    stack: ServiceProcesses, watcher: EventWatcher, forger: Forger, service_db: dict[str, str]
) -> None:
    account = f"tamper-{uuid.uuid4().hex[:10]}"
    key, value, headers = forger.record(FundWallet(account_id=account, amount=usd(100)), "marketplace")
    changed = value.replace(b'"amount_minor":100', b'"amount_minor":900')
    assert changed != value
    tampered = await forger.send(FundWallet.topic.name, key, changed, headers)
    await refused(watcher, tampered, "account", "signature bad_signature")
    assert wallets(service_db, account) == {}

    # The same record as signed goes through: the signature, not the sender, was the problem.
    await forger.send(FundWallet.topic.name, key, value, headers)
    funded = await watcher.wait_for(
        lambda s: isinstance(s.message, WalletFunded) and s.message.account_id == account, timeout=60
    )
    assert funded.message.balance.amount_minor == 100  # type: ignore[attr-defined]


async def test_x9_a_signed_command_replayed_after_the_window_is_dead_lettered_and_moves_no_money(
    stack: ServiceProcesses, watcher: EventWatcher, forger: Forger, service_db: dict[str, str]
) -> None:
    """A FundWallet the marketplace really signed, captured and sent again six minutes later."""
    account = f"replayed-{uuid.uuid4().hex[:10]}"
    fund = FundWallet(account_id=account, amount=usd(50_000))
    captured = forger.record(fund, "marketplace", occurred_at=datetime.now(UTC) - timedelta(minutes=6))
    replayed = await forger.send(fund.topic.name, *captured)
    letter = await refused(watcher, replayed, "account", "stale: signed at")
    assert "reached the broker 36" in letter.headers[DEAD_LETTER_REASON].decode()  # 360 s late, give or take
    # The same command signed now goes through: the window, not the command, refused it.
    fresh = await forger.send(fund.topic.name, *forger.record(fund, "marketplace"))
    await watcher.wait_for(lambda s: isinstance(s.message, WalletFunded) and s.message.account_id == account)
    assert wallets(service_db, account) == {account: 50_000}
    assert fresh != replayed
