"""G1 end to end: orders through the real stack (broker, five service processes), then the books
audit reads every service's read API and finds the books balanced; the saga's and payment's
read routes it relies on answer what they promise."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import httpx
import pytest
from typer.testing import CliRunner

from contracts import Checkout, ConfirmReceipt, FundWallet, Money, OrderStatus, OrderStatusChanged
from scripts.audit import audit_stack
from scripts.cli import app
from scripts.marketplace import EventWatcher, Marketplace, Seen
from scripts.onboarding import MARKETPLACE_ID, Onboarding, Person
from scripts.stack import ServiceProcesses

pytestmark = [pytest.mark.e2e, pytest.mark.kafka, pytest.mark.slow]


def usd(minor: int) -> Money:
    return Money(amount_minor=minor, currency="USD")


def reaches(order_id: str, *statuses: OrderStatus) -> Callable[[Seen], bool]:
    def matches(seen: Seen) -> bool:
        m = seen.message
        return isinstance(m, OrderStatusChanged) and m.order_id == order_id and m.status in statuses

    return matches


async def place(market: Marketplace, watcher: EventWatcher, buyer: str, seller: str, minor: int) -> str:
    order_id = f"order-g1-{uuid.uuid4().hex[:10]}"
    checkout = Checkout(
        marketplace_id=MARKETPLACE_ID, order_id=order_id, buyer_id=buyer, seller_id=seller, amount=usd(minor)
    )
    await market.publish(checkout, correlation_id=order_id, idempotency_key=f"checkout-{order_id}")
    await watcher.wait_for(reaches(order_id, OrderStatus.IN_ESCROW, OrderStatus.CANCELLED, OrderStatus.PAYMENT_FAILED))
    return order_id


async def test_g1_orders_through_the_stack_leave_books_the_audit_finds_balanced(
    stack: ServiceProcesses, market: Marketplace, watcher: EventWatcher, onboarding: Onboarding
) -> None:
    n = uuid.uuid4().int % 10**8
    buyer = Person.numbered(f"buyer-g1-{n}", n)
    seller = f"seller-g1-{n}"
    await onboarding.buyer(buyer)
    await market.publish(
        FundWallet(account_id=buyer.account_id, amount=usd(10_000)),
        correlation_id=buyer.account_id,
        idempotency_key=f"fund-{n}",
    )
    # One order completes, one stays in escrow, one is declined (more than the wallet has left).
    completed = await place(market, watcher, buyer.account_id, seller, 2_500)
    await market.publish(
        ConfirmReceipt(order_id=completed, buyer_id=buyer.account_id),
        correlation_id=completed,
        idempotency_key=f"confirm-{completed}",
    )
    await watcher.wait_for(reaches(completed, OrderStatus.COMPLETED))
    held = await place(market, watcher, buyer.account_id, seller, 4_000)
    declined = await place(market, watcher, buyer.account_id, seller, 9_000)

    report = await audit_stack(stack.state_dir, attempts=3)

    assert report.ok, report.summary()
    assert report.figures["captured payments"] >= 2
    assert any(t.currency == "USD" and t.ledger_minor == t.orders_minor >= 4_000 for t in report.escrow)

    async with httpx.AsyncClient(timeout=10) as client:
        # The saga's read API: every order, filtered by status, paged.
        in_escrow = await client.get(f"{stack.saga_url}/orders", params={"status": "in_escrow", "per_page": 100})
        declined_ones = await client.get(
            f"{stack.saga_url}/orders", params={"status": "payment_failed", "per_page": 100}
        )
        unknown = await client.get(f"{stack.saga_url}/orders", params={"status": "lost"})
        # The payment's read route for the audit: every account's payments in one status.
        captured = await client.get(f"{stack.payment_url}/payments", params={"status": "captured", "per_page": 100})

    assert in_escrow.status_code == 200
    mine = {o["order_id"]: o for o in in_escrow.json()["orders"] if o["buyer_id"] == buyer.account_id}
    assert list(mine) == [held]
    assert (mine[held]["amount"], mine[held]["still_held"], mine[held]["reason"]) == (
        usd(4_000).model_dump(),
        usd(4_000).model_dump(),
        None,
    )
    reasons = {o["order_id"]: o["reason"] or "" for o in declined_ones.json()["orders"]}
    assert "insufficient_funds" in reasons[declined], reasons
    assert unknown.status_code == 400
    assert captured.status_code == 200
    orders = {p["order_id"] for p in captured.json()["payments"]}
    assert {completed, held} <= orders
    assert declined not in orders


def test_g1_tradeguard_audit_over_the_stack_exits_0(stack: ServiceProcesses) -> None:
    """The CLI over the same stack (the orders of the test above, and any other's): the books balance."""
    done = CliRunner().invoke(app, ["audit", "--state-dir", str(stack.state_dir)])

    assert done.exit_code == 0, done.stdout
    assert "the books balance" in done.stdout
