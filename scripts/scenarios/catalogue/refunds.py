"""Refunds (P6, S1, E2): an order in escrow given back to the buyer, in partials or at once.

Each refund goes through the saga one at a time: escrow gives that part of the hold back
(FundsReturned), the payment pays it back to the buyer's sources (PaymentRefunded), and the
order counts it; when the last unit of the price is back the order is refunded.
"""

from __future__ import annotations

from contracts import FundsReturned, Money, OrderStatus, PaymentCaptured, WalletCredited
from scripts.scenarios.outcome import expect
from scripts.scenarios.registry import scenario
from scripts.scenarios.steps import (
    add_card,
    checkout,
    expect_in_escrow,
    network_book,
    onboard_buyer,
    order_reaches,
    order_statuses,
    refund,
    refund_refused,
    top_up,
    usd,
    wallet_balance,
)
from scripts.scenarios.world import World

APPROVING_CARD = "4242424242424242"  # the simulator's approving Visa (services/funding/data/test_cards.toml)
REFUNDED_STATUSES = [OrderStatus.PAYMENT_PENDING, OrderStatus.PAID, OrderStatus.IN_ESCROW, OrderStatus.REFUNDED]


def total(amounts: list[Money], currency: str) -> Money:
    return sum(amounts, Money(amount_minor=0, currency=currency))


def distinct(statuses: list[OrderStatus]) -> list[OrderStatus]:
    """The statuses in order, without the repeats a partial refund's announcement makes."""
    return [s for n, s in enumerate(statuses) if n == 0 or statuses[n - 1] != s]


@scenario(
    "partial-refunds-to-zero",
    "A card-paid order in escrow is refunded in three partials; a fourth is refused; the card gets it all back",
    features=("P6", "E2", "S1", "A4"),
)
async def partial_refunds_to_zero(world: World) -> None:
    """A bound buyer pays a 42.50 USD order by card and it reaches escrow. The marketplace
    refunds 10.00, then 7.50, then the 25.00 USD left, each waited for until the buyer has it
    back: escrow gives each part of the hold back, the payment refunds it to the card, and the
    order stays in escrow with less held until the last one, which makes it refunded. A fourth
    refund of 1.00 USD is refused, naming the 0.00 USD left. The buyer got back exactly what
    they paid, and the network's own book shows the charge refunded in full, in three refunds."""
    buyer = await onboard_buyer(world)
    source_id, token = await add_card(world, buyer, APPROVING_CARD)
    price = usd(4250)
    order_id = await checkout(world, buyer, world.fresh("seller"), price, item="Rain jacket", source_id=source_id)
    await expect_in_escrow(world, order_id)
    captured = await world.event(PaymentCaptured, order_id=order_id)
    paid = captured.breakdown.total if captured.breakdown is not None else captured.amount
    charged = await network_book(world, token)
    expect(charged.get("USD", {}).get("captured_minor") == paid.amount_minor, f"the card charged {paid}", got=charged)

    refunds = [await refund(world, order_id, usd(minor), reason="partly damaged") for minor in (1000, 750, 2500)]

    expect(
        [r.remaining for r in refunds] == [usd(3250), usd(2500), usd(0)],
        "32.50, 25.00 and then 0.00 USD left to refund",
        got=[str(r.remaining) for r in refunds],
    )
    returned = world.seen(FundsReturned, order_id=order_id)
    expect(
        [r.still_held for r in returned] == [usd(3250), usd(2500), usd(0)],
        "escrow to hold 32.50, 25.00 and then nothing",
        got=[str(r.still_held) for r in returned],
    )
    final = await order_reaches(world, order_id, OrderStatus.REFUNDED)
    expect(final.refunded == price, "the order refunded in full", got=final.refunded)
    rejected = await refund_refused(world, order_id, usd(100), "refund_exceeds_remaining")
    expect("0.00 USD left to refund" in rejected.reason, "the refusal to name the 0.00 USD left", got=rejected.reason)

    back = total([r.refunded for r in refunds], paid.currency)
    expect(back == paid, f"the buyer to get back exactly the {paid} paid", got=back)
    book = (await network_book(world, token)).get("USD", {})
    expect(
        (book.get("refunded_minor"), book.get("refunds"), book.get("net_minor")) == (paid.amount_minor, 3, 0),
        f"the network's book to show the {paid} charge refunded in three refunds",
        got=book,
    )
    expect(
        distinct(order_statuses(world, order_id)) == REFUNDED_STATUSES,
        "the order's statuses in order: " + " → ".join(REFUNDED_STATUSES),
        got=" → ".join(order_statuses(world, order_id)),
    )
    world.say(f"{order_id} is refunded; {buyer.account_id} has {back} back on the card")


@scenario(
    "refund-wallet-payment",
    "A wallet-paid order in escrow is refunded in full: the buyer's wallet is back where it started",
    features=("P6", "P1", "E2", "S1"),
)
async def refund_wallet_payment(world: World) -> None:
    """A bound buyer tops the wallet up with 100.00 USD and pays a 42.50 USD order from it; the
    order reaches escrow. The marketplace refunds the whole price at once: escrow gives the hold
    back, the payment pays it back to the wallet, and the order is refunded. The wallet holds
    100.00 USD again."""
    buyer = await onboard_buyer(world)
    start = await top_up(world, buyer.account_id, usd(10_000))
    price = usd(4250)
    order_id = await checkout(world, buyer, world.fresh("seller"), price, item="Table lamp")
    await expect_in_escrow(world, order_id)

    refunded = await refund(world, order_id, price, reason="never shipped")

    expect(refunded.refunded == price, f"the buyer to get the {price} paid back", got=refunded.refunded)
    final = await order_reaches(world, order_id, OrderStatus.REFUNDED)
    expect(final.refunded == price, "the order refunded in full", got=final.refunded)
    # The wallet leg is paid back by a credit to the wallet: wait for it, then read the balance.
    await world.event(WalletCredited, account_id=buyer.account_id, order_id=order_id)
    balance = await wallet_balance(world, buyer.account_id, "USD")
    expect(balance == start, f"the wallet back at {start}", got=balance)
    world.say(f"{order_id} is refunded; {buyer.account_id}'s wallet holds {balance} again")
