"""End to end: real broker, five service processes, orders placed the way a marketplace would."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import OperationalError

from contracts import (
    Checkout,
    CommandRejected,
    ConfirmReceipt,
    FundWallet,
    Money,
    OrderStatus,
    OrderStatusChanged,
    WalletFunded,
)
from contracts.topics import ACCOUNT_COMMANDS, DEAD_LETTER, DEAD_LETTER_REASON, DEAD_LETTER_SOURCE
from scripts.marketplace import EventWatcher, Marketplace, Seen
from scripts.onboarding import MARKETPLACE_ID, Onboarding, Person
from scripts.stack import ServiceProcesses
from services.account.store import wallets
from services.escrow.store import ledger_accounts, ledger_transfers
from services.notification.store import notifications
from shared.clock import advance_clock_file
from shared.db import create_engine
from tests.support.eventually import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.kafka, pytest.mark.slow]


def usd(minor: int) -> Money:
    return Money(amount_minor=minor, currency="USD")


async def query(url: str, statement: Any, attempts: int = 5) -> list[Any]:
    """Read a service's database while it runs; SQLite's lock, held by the service's batches on a
    loaded machine, is waited out rather than failed on."""
    engine = create_engine(url)
    try:
        for attempt in range(1, attempts + 1):
            try:
                async with engine.connect() as conn:
                    return list((await conn.execute(statement)).all())
            except OperationalError as error:
                if "database is locked" not in str(error) or attempt == attempts:
                    raise
                await asyncio.sleep(0.2 * attempt)
        raise AssertionError("unreachable")
    finally:
        await engine.dispose()


def status_of(order_id: str, *statuses: OrderStatus) -> Any:
    def matches(seen: Seen) -> bool:
        m = seen.message
        return isinstance(m, OrderStatusChanged) and m.order_id == order_id and m.status in statuses

    return matches


def statuses(watcher: EventWatcher, order_id: str) -> list[OrderStatus]:
    return [s.message.status for s in watcher.about(order_id) if isinstance(s.message, OrderStatusChanged)]


async def wallet_balances(url: str, *accounts: str) -> dict[str, int]:
    rows = await query(
        url, sa.select(wallets.c.account_id, wallets.c.balance_minor).where(wallets.c.account_id.in_(accounts))
    )
    return dict(rows)


async def notifications_for(url: str, *recipients: str) -> Counter[tuple[str, str]]:
    rows = await query(
        url,
        sa.select(notifications.c.recipient_id, notifications.c.kind).where(
            notifications.c.recipient_id.in_(recipients)
        ),
    )
    return Counter((r.recipient_id, r.kind) for r in rows)


async def test_happy_path_completes_once_even_when_the_marketplace_repeats_itself(
    market: Marketplace, watcher: EventWatcher, onboarding: Onboarding, service_db: dict[str, str]
) -> None:
    run = uuid.uuid4().hex[:8]
    buyer, seller, order_id = f"buyer-{run}", f"seller-{run}", f"order-{run}"
    await onboarding.buyer(Person.numbered(buyer, int(run, 16) % 10**8))
    price = usd(12999)

    # The buyer tops up the wallet.
    await market.publish(
        FundWallet(account_id=buyer, amount=usd(50000)), correlation_id=order_id, idempotency_key=f"topup-{run}"
    )
    # The marketplace checks out, and, unsure it worked, publishes the very same record again
    # and then the same command in a new envelope.
    checkout = Checkout(
        marketplace_id=MARKETPLACE_ID, order_id=order_id, buyer_id=buyer, seller_id=seller, amount=price, item="lamp"
    )
    first = await market.publish(checkout, correlation_id=order_id, idempotency_key=f"checkout-{order_id}")
    await market.publish_raw(checkout.topic, order_id, first.model_dump_json().encode(), checkout)
    await market.publish(checkout, correlation_id=order_id, idempotency_key=f"checkout-{order_id}")

    await watcher.wait_for(status_of(order_id, OrderStatus.IN_ESCROW, OrderStatus.CANCELLED))
    # The buyer confirms receipt, twice.
    for _ in range(2):
        await market.publish(
            ConfirmReceipt(order_id=order_id, buyer_id=buyer),
            correlation_id=order_id,
            idempotency_key=f"confirm-{order_id}",
        )
    final = await watcher.wait_for(status_of(order_id, OrderStatus.COMPLETED, OrderStatus.CANCELLED))

    assert final.message.status is OrderStatus.COMPLETED  # type: ignore[attr-defined]
    # Buyer debited once; the seller's wallet is paid right after completion, once.
    expected_balances = {buyer: 50000 - 12999, seller: 12999}
    balances = await eventually(
        lambda: wallet_balances(service_db["account"], buyer, seller), lambda b: b == expected_balances
    )
    assert balances == expected_balances
    # E1/E2: escrow holds nothing for the order any more, and every currency sums to zero.
    accounts = await query(
        service_db["escrow"],
        sa.select(
            ledger_accounts.c.code,
            ledger_accounts.c.currency,
            ledger_accounts.c.debits_pending,
            ledger_accounts.c.debits_posted,
            ledger_accounts.c.credits_pending,
            ledger_accounts.c.credits_posted,
        ),
    )
    held = [a for a in accounts if a.code.startswith(f"escrow_holding:{order_id}:")]
    assert len(held) == 1
    assert (held[0].credits_posted - held[0].debits_posted, held[0].debits_pending) == (0, 0)
    for currency in {a.currency for a in accounts}:
        mine = [a for a in accounts if a.currency == currency]
        assert sum(a.credits_posted - a.debits_posted for a in mine) == 0
        assert sum(a.credits_pending - a.debits_pending for a in mine) == 0
    records = await query(
        service_db["escrow"], sa.select(ledger_transfers.c.kind).where(ledger_transfers.c.order_id == order_id)
    )
    # The hold (the price in, the seller's reservation) and the release posting it.
    assert sorted(r.kind for r in records) == ["pending", "post_pending", "single_phase"]
    # Every status once, in order.
    assert statuses(watcher, order_id) == [
        OrderStatus.PAYMENT_PENDING,
        OrderStatus.PAID,
        OrderStatus.IN_ESCROW,
        OrderStatus.RELEASING,
        OrderStatus.COMPLETED,
    ]
    # One notification per step, each recorded exactly once.
    expected = Counter(
        {
            (buyer, "welcome"): 1,
            (buyer, "account_activated"): 1,
            (buyer, "identity_verified"): 1,
            (buyer, "marketplace_access_granted"): 1,
            (buyer, "wallet_funded"): 1,
            (buyer, "payment_succeeded"): 1,
            (buyer, "funds_held"): 1,
            (seller, "order_paid"): 1,
            (seller, "funds_released"): 1,
            (seller, "payout_credited"): 1,
            (buyer, "order_completed"): 1,
        }
    )
    got = await eventually(
        lambda: notifications_for(service_db["notification"], buyer, seller), lambda c: c == expected
    )
    assert got == expected


async def test_s2_insufficient_balance_waits_for_another_payment_then_closes_moving_no_money(
    market: Marketplace,
    watcher: EventWatcher,
    onboarding: Onboarding,
    service_db: dict[str, str],
    stack: ServiceProcesses,
) -> None:
    run = uuid.uuid4().hex[:8]
    buyer, order_id = f"buyer-{run}", f"order-{run}"
    await onboarding.buyer(Person.numbered(buyer, int(run, 16) % 10**8))
    await market.publish(
        FundWallet(account_id=buyer, amount=usd(1000)), correlation_id=order_id, idempotency_key=f"topup-{run}"
    )
    await market.publish(
        Checkout(
            marketplace_id=MARKETPLACE_ID,
            order_id=order_id,
            buyer_id=buyer,
            seller_id=f"seller-{run}",
            amount=usd(12999),
        ),
        correlation_id=order_id,
        idempotency_key=f"checkout-{order_id}",
    )

    declined = await watcher.wait_for(status_of(order_id, OrderStatus.PAYMENT_FAILED, OrderStatus.IN_ESCROW))
    assert declined.message.status is OrderStatus.PAYMENT_FAILED  # type: ignore[attr-defined]
    assert "insufficient_funds" in (declined.message.reason or "")  # type: ignore[attr-defined]
    # Nobody pays again: the payment window (30 minutes) closes the order (S4).
    advance_clock_file(stack.clock_file, timedelta(minutes=31))
    final = await watcher.wait_for(status_of(order_id, OrderStatus.CANCELLED))
    assert (final.message.reason or "").startswith("payment_window_expired")  # type: ignore[attr-defined]
    (balance,) = await query(
        service_db["account"], sa.select(wallets.c.balance_minor).where(wallets.c.account_id == buyer)
    )
    assert balance == (1000,)
    got = await eventually(
        lambda: notifications_for(service_db["notification"], buyer),
        lambda c: c[(buyer, "order_cancelled")] == 1,
    )
    assert got[(buyer, "payment_failed")] == 1
    assert got[(buyer, "order_cancelled")] == 1


async def test_malformed_record_is_dead_lettered_and_the_service_keeps_consuming(
    market: Marketplace, watcher: EventWatcher
) -> None:
    run = uuid.uuid4().hex[:8]
    garbage = f"{{not json {run}".encode()
    await market.publish_raw(ACCOUNT_COMMANDS, f"acct-{run}", garbage)
    await market.publish(FundWallet(account_id=f"acct-{run}", amount=usd(100)), correlation_id=run, idempotency_key=run)

    funded = await watcher.wait_for(
        lambda s: isinstance(s.message, WalletFunded) and s.message.account_id == f"acct-{run}"
    )
    assert funded.envelope.source == "account"
    dead = await watcher.wait_for_record(lambda r: r.topic == DEAD_LETTER.name and r.value == garbage)
    headers = dead.headers
    assert b"not JSON" in headers[DEAD_LETTER_REASON]
    assert headers[DEAD_LETTER_SOURCE].startswith(ACCOUNT_COMMANDS.name.encode())


async def test_command_for_an_unknown_order_is_rejected_with_a_reason(
    market: Marketplace, watcher: EventWatcher
) -> None:
    order_id = f"order-{uuid.uuid4().hex[:8]}"
    sent = await market.publish(
        ConfirmReceipt(order_id=order_id, buyer_id="nobody"), correlation_id=order_id, idempotency_key=order_id
    )

    rejected = await watcher.wait_for(
        lambda s: isinstance(s.message, CommandRejected) and s.message.subject_id == order_id
    )

    assert isinstance(rejected.message, CommandRejected)
    assert rejected.message.code == "order_not_found"
    assert rejected.message.rejected_message_id == sent.message_id
    assert order_id in rejected.message.reason
