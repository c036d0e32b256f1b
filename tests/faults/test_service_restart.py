"""Faults: a service that is down while an order is in flight catches up when it comes back,
and a service killed without warning loses nothing it had acknowledged."""

from __future__ import annotations

import uuid

import pytest

from contracts import Checkout, ConfirmReceipt, FundWallet, OrderStatus, OrderStatusChanged
from scripts.marketplace import EventWatcher, Marketplace
from scripts.onboarding import MARKETPLACE_ID, Onboarding, Person
from scripts.stack import ServiceProcesses
from tests.support.orders import reached, usd

pytestmark = [pytest.mark.e2e, pytest.mark.kafka, pytest.mark.slow]


async def place_order(market: Marketplace, run: str) -> tuple[str, str]:
    """An order of a buyer onboarded before (see ``buyers``)."""
    buyer, order_id = f"buyer-{run}", f"order-{run}"
    await market.publish(FundWallet(account_id=buyer, amount=usd(5000)), correlation_id=order_id, idempotency_key=run)
    await market.publish(
        Checkout(
            marketplace_id=MARKETPLACE_ID,
            order_id=order_id,
            buyer_id=buyer,
            seller_id=f"seller-{run}",
            amount=usd(1500),
        ),
        correlation_id=order_id,
        idempotency_key=f"checkout-{run}",
    )
    return buyer, order_id


@pytest.mark.parametrize("service", ["payment", "escrow"])
async def test_order_waits_for_a_stopped_service_and_completes_after_restart(
    stack: ServiceProcesses, market: Marketplace, watcher: EventWatcher, onboarding: Onboarding, service: str
) -> None:
    run = uuid.uuid4().hex[:8]
    await onboarding.buyer(Person.numbered(f"buyer-{run}", int(run, 16) % 10**8))
    # The service is down when the order arrives.
    stack.stop_one(service)
    buyer, order_id = await place_order(market, run)
    await watcher.wait_for(reached(order_id, OrderStatus.PAYMENT_PENDING))
    assert OrderStatus.IN_ESCROW not in [
        s.message.status for s in watcher.about(order_id) if isinstance(s.message, OrderStatusChanged)
    ]

    # It comes back and picks up where the group's committed offsets say.
    stack.start_one(service)
    await watcher.wait_for(reached(order_id, OrderStatus.IN_ESCROW), timeout=60)
    await market.publish(
        ConfirmReceipt(order_id=order_id, buyer_id=buyer), correlation_id=order_id, idempotency_key=run
    )
    await watcher.wait_for(reached(order_id, OrderStatus.COMPLETED), timeout=60)


async def test_a_killed_saga_resumes_orders_without_duplicating_steps(
    stack: ServiceProcesses, market: Marketplace, watcher: EventWatcher, onboarding: Onboarding
) -> None:
    runs = [uuid.uuid4().hex[:8] for _ in range(5)]
    await onboarding.many([Person.numbered(f"buyer-{run}", int(run, 16) % 10**8) for run in runs])
    orders = [await place_order(market, run) for run in runs]
    stack.processes["saga"].kill()  # SIGKILL: no graceful shutdown, no final offset commit
    stack.processes["saga"].wait()
    stack.start_one("saga")

    for (buyer, order_id), run in zip(orders, runs, strict=True):
        await watcher.wait_for(reached(order_id, OrderStatus.IN_ESCROW), timeout=60)
        await market.publish(
            ConfirmReceipt(order_id=order_id, buyer_id=buyer), correlation_id=order_id, idempotency_key=run
        )
    for _, order_id in orders:
        await watcher.wait_for(reached(order_id, OrderStatus.COMPLETED), timeout=60)
        changes = [s for s in watcher.about(order_id) if isinstance(s.message, OrderStatusChanged)]
        # A record the relay published just before the kill may be published again (same
        # message_id: consumers deduplicate on it). What must never happen is a step taken
        # twice, which would be a second status change with a new message_id.
        ids_per_status: dict[OrderStatus, set[object]] = {}
        for seen in changes:
            assert isinstance(seen.message, OrderStatusChanged)
            ids_per_status.setdefault(seen.message.status, set()).add(seen.envelope.message_id)
        assert all(len(ids) == 1 for ids in ids_per_status.values()), ids_per_status
        assert OrderStatus.COMPLETED in ids_per_status
