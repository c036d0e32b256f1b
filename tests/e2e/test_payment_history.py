"""P7: an account's payments, newest first, paged, from the payment service's read API and
the `tradeguard payments history` command, against the running stack."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from contracts import Checkout, FundWallet, Money, OrderStatus, OrderStatusChanged
from scripts.cli import app
from scripts.marketplace import EventWatcher, Marketplace
from scripts.onboarding import MARKETPLACE_ID, Onboarding, Person
from scripts.stack import ServiceProcesses

pytestmark = [pytest.mark.e2e, pytest.mark.kafka, pytest.mark.slow]


def usd(minor: int) -> Money:
    return Money(amount_minor=minor, currency="USD")


async def settled(market: Marketplace, watcher: EventWatcher, buyer: str, minor: int) -> str:
    order_id = f"order-{uuid.uuid4().hex[:10]}"
    checkout = Checkout(
        marketplace_id=MARKETPLACE_ID, order_id=order_id, buyer_id=buyer, seller_id="seller-p7", amount=usd(minor)
    )
    await market.publish(checkout, correlation_id=order_id, idempotency_key=f"checkout-{order_id}")
    await watcher.wait_for(
        lambda s: (
            isinstance(s.message, OrderStatusChanged)
            and s.message.order_id == order_id
            and s.message.status in (OrderStatus.IN_ESCROW, OrderStatus.CANCELLED, OrderStatus.PAYMENT_FAILED)
        )
    )
    return order_id


def page(stack: ServiceProcesses, **params: Any) -> httpx.Response:
    return httpx.get(f"{stack.payment_url}/payments", params=params, timeout=10)


async def test_p7_an_accounts_payments_newest_first_paged(
    stack: ServiceProcesses, market: Marketplace, watcher: EventWatcher, onboarding: Onboarding
) -> None:
    n = uuid.uuid4().int % 10**8
    buyer = Person.numbered(f"buyer-p7-{n}", n)
    await onboarding.buyer(buyer)
    await market.publish(
        FundWallet(account_id=buyer.account_id, amount=usd(10_000)),
        correlation_id=buyer.account_id,
        idempotency_key=f"f-{n}",
    )
    paid = await settled(market, watcher, buyer.account_id, 4_250)
    declined = await settled(market, watcher, buyer.account_id, 9_000)  # 57.50 USD left: short

    first = page(stack, account_id=buyer.account_id, per_page=1)
    assert first.status_code == 200
    body = first.json()
    assert (body["total"], body["page"], body["per_page"]) == (2, 1, 1)
    assert [(p["order_id"], p["status"], p["failure_reason"]) for p in body["payments"]] == [
        (declined, "failed", "insufficient_funds")
    ]
    second = page(stack, account_id=buyer.account_id, per_page=1, page=2).json()
    assert [(p["order_id"], p["status"], p["funding_type"]) for p in second["payments"]] == [
        (paid, "captured", "wallet")
    ]
    assert second["payments"][0]["amount"] == {"amount_minor": 4_250, "currency": "USD"}
    breakdown = second["payments"][0]["breakdown"]  # P3: domestic, so no rate and no fee
    assert (breakdown["total"], breakdown["fee"]["amount_minor"], breakdown["rate"]) == (
        {"amount_minor": 4_250, "currency": "USD"},
        0,
        None,
    )

    assert page(stack, per_page=1).json() == {"error": "account_id: required"}
    assert page(stack, account_id=buyer.account_id, per_page=500).status_code == 400

    shown = CliRunner().invoke(app, ["payments", "history", buyer.account_id, "--state-dir", str(stack.state_dir)])
    assert shown.exit_code == 0, shown.output
    assert declined in shown.output
    assert "insufficient_funds" in shown.output


async def test_p2_the_payment_services_copy_of_a_buyers_limits_and_spending(
    stack: ServiceProcesses, market: Marketplace, watcher: EventWatcher, onboarding: Onboarding
) -> None:
    n = uuid.uuid4().int % 10**8
    buyer = Person.numbered(f"buyer-p2-{n}", n)
    await onboarding.buyer(buyer)  # returns once the payment service applies L1 (it polls /limits)
    await market.publish(
        FundWallet(account_id=buyer.account_id, amount=usd(10_000)),
        correlation_id=buyer.account_id,
        idempotency_key=f"f-{n}",
    )
    await settled(market, watcher, buyer.account_id, 4_250)

    async with httpx.AsyncClient(base_url=stack.payment_url, timeout=10) as client:
        response = await client.get("/limits", params={"account_id": buyer.account_id})
        unknown = await client.get("/limits", params={"account_id": "nobody-p2"})
        missing = await client.get("/limits")
    assert response.status_code == 200
    body = response.json()
    assert (body["level"], body["per_payment"]["currency"]) == ("L1", "USD")
    assert body["per_payment"]["amount_minor"] > 10_000  # above L0's 100.00 USD
    assert sorted(w["window"] for w in body["spent"]) == ["day", "month"]
    assert {w["spent"]["amount_minor"] for w in body["spent"]} == {4_250}

    assert unknown.status_code == 404
    assert missing.json() == {"error": "account_id: required"}
