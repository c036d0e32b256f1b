"""Our marketplace's checkout against a TradeGuard sandbox: the fixtures come from the plugin that
tradeguard-client installs (tradeguard_stack, tradeguard_client, funding, clock, books)."""

from __future__ import annotations

import asyncio
import os
import shutil
from datetime import timedelta
from importlib import resources
from pathlib import Path

import pytest
from pydantic import ValidationError

from contracts import Checkout, DisputeReason, Money, OrderStatus, OrderStatusChanged
from tradeguard_client import CommandRefused, OrderEnded, Sandbox, TradeGuardClient
from tradeguard_client.pytest_plugin import Clock, Funding

HERE = Path(__file__).resolve().parent


def usd(minor: int) -> Money:
    return Money(amount_minor=minor, currency="USD")


@pytest.mark.usefixtures("books")
async def test_a_paid_order_is_held_then_released_on_receipt(
    tradeguard_stack: Sandbox, tradeguard_client: TradeGuardClient
) -> None:
    buyer = await tradeguard_stack.new_buyer(wallet=usd(50_000))
    order = await tradeguard_client.checkout(
        buyer_id=buyer.account_id, seller_id=tradeguard_stack.new_seller_id(), amount=usd(12_999), item="Speaker"
    )
    held = await order.wait_for(OrderStatus.IN_ESCROW)
    assert held.amount == usd(12_999)
    await order.confirm_receipt()
    await order.wait_for(OrderStatus.COMPLETED)
    statuses = [e.message.status async for e in order.events() if isinstance(e.message, OrderStatusChanged)]
    assert statuses[0] is not OrderStatus.COMPLETED, statuses
    assert statuses[-1] is OrderStatus.COMPLETED
    assert OrderStatus.IN_ESCROW in statuses


@pytest.mark.usefixtures("books")
async def test_a_declined_card_fails_the_payment_with_its_reason(
    tradeguard_stack: Sandbox, tradeguard_client: TradeGuardClient, funding: Funding
) -> None:
    buyer = await funding.buyer_with_card("decline_insufficient_funds")
    order = await tradeguard_client.checkout(
        buyer_id=buyer.account_id,
        seller_id=tradeguard_stack.new_seller_id(),
        amount=usd(2_500),
        source_id=buyer.source_id,
    )
    failed = await order.wait_for(OrderStatus.PAYMENT_FAILED)
    assert failed.reason is not None
    assert "insufficient_funds" in failed.reason


@pytest.mark.usefixtures("books")
async def test_a_wallet_short_of_the_price_fails_the_payment(
    tradeguard_stack: Sandbox, tradeguard_client: TradeGuardClient
) -> None:
    buyer = await tradeguard_stack.new_buyer(wallet=usd(1_000))
    order = await tradeguard_client.checkout(
        buyer_id=buyer.account_id, seller_id=tradeguard_stack.new_seller_id(), amount=usd(5_000)
    )
    failed = await order.wait_for(OrderStatus.PAYMENT_FAILED)
    assert failed.reason is not None
    assert failed.reason.startswith("insufficient_funds")


@pytest.mark.usefixtures("books")
async def test_an_unknown_buyer_ends_the_order(tradeguard_stack: Sandbox, tradeguard_client: TradeGuardClient) -> None:
    order = await tradeguard_client.checkout(
        buyer_id="buyer-nobody-knows", seller_id=tradeguard_stack.new_seller_id(), amount=usd(500)
    )
    with pytest.raises(OrderEnded, match="account_not_found"):
        await order.wait_for(OrderStatus.IN_ESCROW)


@pytest.mark.usefixtures("books")
async def test_the_same_order_id_for_another_sale_is_refused(
    tradeguard_stack: Sandbox, tradeguard_client: TradeGuardClient
) -> None:
    buyer = await tradeguard_stack.new_buyer(wallet=usd(10_000))
    seller = tradeguard_stack.new_seller_id()
    first = await tradeguard_client.checkout(buyer_id=buyer.account_id, seller_id=seller, amount=usd(1_000))
    await first.wait_for(OrderStatus.IN_ESCROW)
    again = await tradeguard_client.checkout(
        buyer_id=buyer.account_id, seller_id=seller, amount=usd(2_000), order_id=first.order_id, idempotency_key="other"
    )
    with pytest.raises(CommandRefused) as refused:
        await again.wait_for(OrderStatus.COMPLETED)
    assert "already exists" in refused.value.reason


@pytest.mark.usefixtures("books")
async def test_an_issuer_timeout_is_retried_and_the_order_paid(
    tradeguard_stack: Sandbox, tradeguard_client: TradeGuardClient, funding: Funding
) -> None:
    buyer = await funding.buyer_with_card("timeout_once")
    order = await tradeguard_client.checkout(
        buyer_id=buyer.account_id,
        seller_id=tradeguard_stack.new_seller_id(),
        amount=usd(4_000),
        source_id=buyer.source_id,
    )
    await order.wait_for(OrderStatus.IN_ESCROW, timeout=60)


@pytest.mark.usefixtures("books")
async def test_a_payment_above_the_threshold_needs_the_buyers_pin(
    tradeguard_stack: Sandbox, tradeguard_client: TradeGuardClient
) -> None:
    buyer = await tradeguard_stack.new_buyer(wallet=usd(90_000))
    seller = tradeguard_stack.new_seller_id()
    without = await tradeguard_client.checkout(buyer_id=buyer.account_id, seller_id=seller, amount=usd(25_000))
    refused = await without.wait_for(OrderStatus.PAYMENT_FAILED)
    assert refused.reason is not None
    assert "security" in refused.reason, refused.reason
    with_pin = await tradeguard_client.checkout(
        buyer_id=buyer.account_id, seller_id=seller, amount=usd(25_000), pin=buyer.pin
    )
    await with_pin.wait_for(OrderStatus.IN_ESCROW)


@pytest.mark.usefixtures("books")
async def test_a_full_refund_gives_everything_back(
    tradeguard_stack: Sandbox, tradeguard_client: TradeGuardClient
) -> None:
    buyer = await tradeguard_stack.new_buyer(wallet=usd(10_000))
    order = await tradeguard_client.checkout(
        buyer_id=buyer.account_id, seller_id=tradeguard_stack.new_seller_id(), amount=usd(3_000)
    )
    await order.wait_for(OrderStatus.IN_ESCROW)
    await order.request_refund(usd(3_000), reason="out of stock")
    refunded = await order.wait_for(OrderStatus.REFUNDED)
    assert refunded.refunded == usd(3_000)


@pytest.mark.usefixtures("books")
async def test_a_dispute_freezes_the_order(tradeguard_stack: Sandbox, tradeguard_client: TradeGuardClient) -> None:
    buyer = await tradeguard_stack.new_buyer(wallet=usd(10_000))
    order = await tradeguard_client.checkout(
        buyer_id=buyer.account_id, seller_id=tradeguard_stack.new_seller_id(), amount=usd(1_500)
    )
    await order.wait_for(OrderStatus.IN_ESCROW)
    await order.open_dispute(DisputeReason.NOT_RECEIVED, "nothing came")
    await order.wait_for(OrderStatus.DISPUTED)


@pytest.mark.usefixtures("books")
async def test_escrow_releases_by_itself_when_the_protection_ends(
    tradeguard_stack: Sandbox, tradeguard_client: TradeGuardClient, clock: Clock
) -> None:
    buyer = await tradeguard_stack.new_buyer(wallet=usd(10_000))
    order = await tradeguard_client.checkout(
        buyer_id=buyer.account_id, seller_id=tradeguard_stack.new_seller_id(), amount=usd(2_000)
    )
    await order.wait_for(OrderStatus.IN_ESCROW)
    await clock.advance(timedelta(days=16))  # past the standard 15-day protection
    await order.wait_for(OrderStatus.COMPLETED, timeout=60)


async def test_a_wrong_command_is_refused_before_anything_is_sent(tradeguard_client: TradeGuardClient) -> None:
    with pytest.raises(ValidationError, match="amount_minor"):
        await tradeguard_client.checkout(buyer_id="buyer-1", seller_id="seller-1", amount=usd(-5))
    with pytest.raises(ValidationError, match="buyer_id"):
        Checkout(order_id="order-1", buyer_id="", seller_id="s", amount=usd(100), marketplace_id="m")


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
@pytest.mark.usefixtures("books")
async def test_the_node_example_publishes_a_checkout_the_stack_takes(tradeguard_stack: Sandbox) -> None:
    """examples/integrator/node/checkout.mjs, run with kafkajs: it validates its Checkout against the
    published JSON Schema, signs it, publishes it, and waits for the order to be held in escrow."""
    node = HERE / "node"
    if not (node / "node_modules").is_dir():
        assert await _run(["npm", "ci", "--no-audit", "--no-fund"], node) == 0
    buyer = await tradeguard_stack.new_buyer(wallet=usd(10_000))
    assert tradeguard_stack.profile_path is not None
    environment = {
        **os.environ,
        "TRADEGUARD_PROFILE": str(tradeguard_stack.profile_path),
        "TRADEGUARD_CONTRACTS": str(resources.files("contracts")),  # the schemas and AsyncAPI document in the wheel
        "BUYER_ID": buyer.account_id,
    }
    output: list[str] = []
    assert await _run(["node", "checkout.mjs"], node, environment, output) == 0, output
    assert "in_escrow" in output[0]


async def _run(
    command: list[str], cwd: Path, env: dict[str, str] | None = None, output: list[str] | None = None
) -> int:
    process = await asyncio.create_subprocess_exec(
        *command, cwd=cwd, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(process.communicate(), 120)
    if output is not None:
        output.append(out.decode())
    return await process.wait()
