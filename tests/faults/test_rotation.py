"""X9 (issue 18): credentials rotate while orders flow. The saga's and the payment service's
broker passwords are replaced mid-flow (each restarted on its new one, then the old ones
retired), and so is the saga's signing secret (the producers that restart MAC with the new one,
the others go on with the old one, both taken), and every order still completes: nothing lost,
nothing valid refused, no dead letter."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from contracts import Checkout, CommandRejected, ConfirmReceipt, FundWallet, OrderStatus
from contracts.topics import DEAD_LETTER
from scripts.marketplace import EventWatcher, Marketplace
from scripts.onboarding import MARKETPLACE_ID, Onboarding, Person
from scripts.stack import ServiceProcesses
from shared import signing
from shared.broker_security import credentials_dir, read_credentials, retire_password, rotate_password
from tests.support.orders import reached, usd

pytestmark = [pytest.mark.e2e, pytest.mark.kafka, pytest.mark.slow]

ORDERS_PER_WAVE = 4
PRICE = 2500


async def wave(market: Marketplace, buyers: list[Person], run: str, wave_no: int) -> list[tuple[str, str]]:
    """One order per buyer, checked out at once; returns (order, buyer) pairs."""
    orders = [(f"order-{run}-{wave_no}-{i}", buyer.account_id) for i, buyer in enumerate(buyers)]
    for order_id, buyer_id in orders:
        checkout = Checkout(
            marketplace_id=MARKETPLACE_ID,
            order_id=order_id,
            buyer_id=buyer_id,
            seller_id=f"seller-{run}",
            amount=usd(PRICE),
        )
        await market.publish(checkout, correlation_id=order_id, idempotency_key=f"checkout-{order_id}")
    return orders


async def confirm_all(market: Marketplace, watcher: EventWatcher, orders: list[tuple[str, str]]) -> None:
    for order_id, buyer_id in orders:
        await watcher.wait_for(reached(order_id, OrderStatus.IN_ESCROW), timeout=90)
        await market.publish(
            ConfirmReceipt(order_id=order_id, buyer_id=buyer_id),
            correlation_id=order_id,
            idempotency_key=f"confirm-{order_id}",
        )
    for order_id, _ in orders:
        await watcher.wait_for(reached(order_id, OrderStatus.COMPLETED), timeout=90)


async def test_x9_broker_passwords_rotate_while_orders_flow_and_nothing_valid_is_refused(
    stack: ServiceProcesses, market: Marketplace, watcher: EventWatcher, onboarding: Onboarding
) -> None:
    run = uuid.uuid4().hex[:8]
    buyers = [Person.numbered(f"buyer-rot-{run}-{i}", int(run, 16) % 10**6 * 10 + i) for i in range(ORDERS_PER_WAVE)]
    await onboarding.many(buyers)
    for buyer in buyers:
        await market.publish(
            FundWallet(account_id=buyer.account_id, amount=usd(3 * PRICE)),
            correlation_id=buyer.account_id,
            idempotency_key=f"fund-{buyer.account_id}",
        )
    directory = credentials_dir()
    before = {p: read_credentials(p).username for p in ("saga", "payment")}

    first = await wave(market, buyers, run, 1)
    # Mid-flow: new passwords; the payment service goes on with its old one for a while (both are
    # valid), the saga restarts on its new one at once.
    for principal in before:
        await rotate_password(stack.bootstrap_servers, directory, principal)
    new_key = signing.rotate(stack.signing_dir, "saga")
    await asyncio.to_thread(stack.stop_one, "saga")
    stack.start_one("saga")
    second = await wave(market, buyers, run, 2)
    await asyncio.to_thread(stack.stop_one, "payment")
    stack.start_one("payment")
    await stack.wait_ready()
    for principal in before:
        await retire_password(stack.bootstrap_servers, directory, principal)
    third = await wave(market, buyers, run, 3)

    await confirm_all(market, watcher, first + second + third)
    after = {p: read_credentials(p).username for p in before}
    assert signing.load_keyring(stack.signing_dir, ["saga"]).verifier("saga").key_ids[0] == new_key
    assert all(after[p] != before[p] for p in before), (before, after)
    ours = {order_id for order_id, _ in first + second + third}
    assert not [r for r in watcher.raw if r.topic == DEAD_LETTER.name]
    assert not [s for s in watcher.seen if isinstance(s.message, CommandRejected) and s.envelope.correlation_id in ours]
    stack.check_alive()
