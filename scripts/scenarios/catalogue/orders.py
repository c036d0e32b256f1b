"""Orders paid from the wallet: the happy path through escrow, and a payment the balance cannot cover."""

from __future__ import annotations

from contracts import (
    DeclineReason,
    FundsHeld,
    FundsReleased,
    OrderStatus,
    PaymentAuthorizationDeclined,
    PaymentAuthorized,
    WalletCredited,
)
from scripts.scenarios.outcome import expect
from scripts.scenarios.registry import scenario
from scripts.scenarios.steps import (
    checkout,
    confirm_receipt,
    expect_declined,
    expect_in_escrow,
    onboard_buyer,
    order_reaches,
    order_statuses,
    top_up,
    usd,
    wallet_balance,
)
from scripts.scenarios.world import World

HAPPY_STATUSES = [
    OrderStatus.PAYMENT_PENDING,
    OrderStatus.PAID,
    OrderStatus.IN_ESCROW,
    OrderStatus.RELEASING,
    OrderStatus.COMPLETED,
]


@scenario(
    "happy-path",
    "A bound buyer pays from the wallet; escrow holds the money until receipt is confirmed; the seller is paid",
    features=("A1", "A4", "A5", "P1", "E1", "E2", "E4", "S1"),
)
async def happy_path(world: World) -> None:
    """A buyer registers, binds the wallet and tops it up with 100.00 USD; the marketplace checks
    out a 42.50 USD order. The account authorises it and debits the wallet (57.50 left), escrow
    holds 42.50, the buyer confirms receipt, escrow releases it and the seller's wallet is
    credited 42.50; the order went through every status once, in order."""
    buyer = await onboard_buyer(world)
    seller = world.fresh("seller")
    funded = await top_up(world, buyer.account_id, usd(10000))
    expect(funded == usd(10000), "the top-up to leave 100.00 USD in the new wallet", got=funded)
    order_id = await checkout(world, buyer, seller, usd(4250), item="Bluetooth speaker")
    await expect_in_escrow(world, order_id)
    authorized = await world.event(PaymentAuthorized, order_id=order_id)
    expect(authorized.balance == usd(5750), "the wallet debited to 57.50 USD", got=authorized.balance)
    held = await world.event(FundsHeld, order_id=order_id)
    expect(held.amount == usd(4250), "escrow to hold 42.50 USD", got=held.amount)

    await confirm_receipt(world, buyer, order_id)
    final = await order_reaches(world, order_id, OrderStatus.COMPLETED, OrderStatus.CANCELLED)
    expect(final.status is OrderStatus.COMPLETED, f"order {order_id} to complete", got=final.status.value)
    released = await world.event(FundsReleased, order_id=order_id)
    expect(released.amount == usd(4250), "escrow to release 42.50 USD to the seller", got=released.amount)
    credited = await world.event(WalletCredited, account_id=seller, order_id=order_id)
    expect(credited.balance == usd(4250), "the seller's wallet to hold 42.50 USD", got=credited.balance)
    world.say(f"{seller} is paid {credited.amount}; {buyer.account_id} has {authorized.balance} left")
    expect(
        order_statuses(world, order_id) == HAPPY_STATUSES,
        "every status once, in order: " + " → ".join(HAPPY_STATUSES),
        got=" → ".join(order_statuses(world, order_id)),
    )


@scenario(
    "payment-declined",
    "A wallet payment larger than the balance is declined: the order waits, no money moves",
    features=("A4", "P1", "P4", "S1"),
)
async def payment_declined(world: World) -> None:
    """A bound buyer holds 10.00 USD and the marketplace checks out 42.50 USD. The account
    declines the payment (insufficient_funds, permanent), the saga marks the order payment_failed
    with that reason (the buyer may pay again another way while the window is open), nothing is authorised or held, and the wallet still holds 10.00 USD."""
    buyer = await onboard_buyer(world)
    await top_up(world, buyer.account_id, usd(1000))
    order_id = await checkout(world, buyer, world.fresh("seller"), usd(4250), item="Desk lamp")
    await expect_declined(world, order_id, "insufficient_funds")
    declined = await world.event(PaymentAuthorizationDeclined, order_id=order_id)
    expect(
        declined.reason is DeclineReason.INSUFFICIENT_FUNDS,
        "the account to decline for insufficient_funds",
        got=declined.reason.value,
    )
    balance = await wallet_balance(world, buyer.account_id, "USD")
    expect(balance == usd(1000), "the wallet to still hold 10.00 USD", got=balance)
    expect(not world.seen(PaymentAuthorized, order_id=order_id), "no authorisation for the order")
    expect(not world.seen(FundsHeld, order_id=order_id), "escrow to hold nothing for the order")
    world.say(f"{buyer.account_id} still has {balance}")
