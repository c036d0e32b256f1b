"""Payments (P1, P2, P4): cards charged on the funding network whatever it does, and limits.

The test cards are the simulator's (services/funding/data/test_cards.toml): each number
scripts how the issuer answers.
"""

from __future__ import annotations

from contracts import WalletCredited
from scripts.scenarios.outcome import expect
from scripts.scenarios.registry import scenario
from scripts.scenarios.steps import (
    add_card,
    checkout,
    expect_cancelled,
    expect_declined,
    expect_in_escrow,
    onboard_buyer,
    top_up,
    usd,
    wallet_balance,
)
from scripts.scenarios.world import World

DECLINING_CARD = "4000000000000002"  # decline_do_not_honor
TIMES_OUT_ONCE = "4000000000005019"  # the first request times out; the retry is answered
ANSWER_LOST = "4000000000005027"  # carried out, but the answer never comes


@scenario(
    "card-declined",
    "A card the issuer declines: the payment fails with the issuer's reason, nothing captured",
    features=("A4", "P1", "P4", "S1"),
)
async def card_declined(world: World) -> None:
    """A bound buyer pays with a card the issuer refuses (do not honor). The account
    authorises the payment; the funding network declines the charge; the payment fails
    permanently with do_not_honor and the order waits for the buyer to pay another way. The
    network captured nothing."""
    buyer = await onboard_buyer(world)
    source_id, token = await add_card(world, buyer, DECLINING_CARD)
    order_id = await checkout(world, buyer, world.fresh("seller"), usd(4250), item="Headphones", source_id=source_id)
    await expect_declined(world, order_id, "do_not_honor")
    book = await world.vault.captures(token)
    expect(book["captures"] == 0, "no capture on the network", got=book)


@scenario(
    "issuer-timeout-then-success",
    "The issuer does not answer the first charge: its status is asked, then the charge is retried and held",
    features=("A4", "P1", "P4"),
)
async def issuer_timeout_then_success(world: World) -> None:
    """The card's first charge times out. The payment service never retries blindly: it asks
    the network the charge's status (never applied), then sends the same charge again (same
    request id) and the issuer approves it. The order reaches escrow; the network shows one
    capture of exactly the order's amount."""
    await paid_once(world, TIMES_OUT_ONCE, "Desk lamp")


@scenario(
    "lost-answer-no-double-charge",
    "The charge is carried out but its answer is lost: a status inquiry finds it; the card is charged once",
    features=("A4", "P1", "P4", "P5"),
)
async def lost_answer_no_double_charge(world: World) -> None:
    """The network captures the first charge but its answer never reaches the payment service
    (it times out). Before anything else the service asks the charge's status, learns it was
    captured, and captures the payment: the order reaches escrow and the network's own book
    shows one capture, never two."""
    await paid_once(world, ANSWER_LOST, "Keyboard")


async def paid_once(world: World, card: str, item: str) -> None:
    """A bound buyer pays 42.50 USD with ``card``: the order reaches escrow and the network's
    own book shows one capture of exactly that, whatever the issuer did on the way."""
    buyer = await onboard_buyer(world)
    source_id, token = await add_card(world, buyer, card)
    price = usd(4250)
    order_id = await checkout(world, buyer, world.fresh("seller"), price, item=item, source_id=source_id)
    await expect_in_escrow(world, order_id)
    book = await world.vault.captures(token)
    expect(book == {"captures": 1, "USD": price.amount_minor}, f"one capture of {price}, not two", got=book)


@scenario(
    "limit-exceeded-daily",
    "A new buyer's payment within the daily limit passes; the next, past it, is cancelled naming the limit",
    features=("P2", "A2", "A3", "S1"),
)
async def limit_exceeded_daily(world: World) -> None:
    """A new US buyer verified at L1 may pay 2,000 USD per payment and 5,000 USD per day (the
    region's data file), halved to 2,500 USD a day in the account's first 30 days; above 200
    USD each payment is confirmed with the PIN. A payment of 1,900 USD passes; a second would
    take the day to 3,800 USD and is cancelled with limit_exceeded, naming the daily limit
    and what is left (600 USD)."""
    buyer = await onboard_buyer(world)
    await world.onboarding.set_pin(buyer)
    await top_up(world, buyer.account_id, usd(1_000_000))
    bike = usd(190_000)
    first = await checkout(world, buyer, world.fresh("seller"), bike, item="Bike", with_pin=True)
    await expect_in_escrow(world, first)
    second = await checkout(world, buyer, world.fresh("seller"), bike, item="Bike", with_pin=True)
    cancelled = await expect_cancelled(world, second, "limit_exceeded")
    reason = cancelled.reason or ""
    expect(
        "daily limit of 2500.00 USD" in reason and "600.00 USD left" in reason,
        "the reason names the daily limit (halved for a new account) and the 600.00 USD left",
        got=reason,
    )


APPROVING_CARD = "4242424242424242"


@scenario(
    "split-payment",
    "The wallet pays what it holds, a card the rest; when the card then fails, the wallet leg comes back",
    features=("P1", "P4", "A4"),
)
async def split_payment(world: World) -> None:
    """A buyer holding 20.00 USD pays a 42.50 USD order balance first: the account debits the
    20.00 USD it holds and the card is charged the other 22.50 USD (the network's book shows
    exactly that). A second buyer splits with a card the issuer declines: the order is
    declined and the wallet's 20.00 USD are paid back."""
    buyer = await onboard_buyer(world)
    await top_up(world, buyer.account_id, usd(2_000))
    source_id, token = await add_card(world, buyer, APPROVING_CARD)
    order_id = await checkout(
        world, buyer, world.fresh("seller"), usd(4_250), item="Tent", source_id=source_id, use_balance_first=True
    )
    await expect_in_escrow(world, order_id)
    book = await world.vault.captures(token)
    expect(book == {"captures": 1, "USD": 2_250}, "the card charged only the 22.50 USD the wallet lacked", got=book)
    left = await wallet_balance(world, buyer.account_id, "USD")
    expect(left.amount_minor == 0, "the wallet emptied by its leg", got=str(left))

    unlucky = await onboard_buyer(world)
    await top_up(world, unlucky.account_id, usd(2_000))
    declining, _ = await add_card(world, unlucky, DECLINING_CARD)
    failed = await checkout(
        world, unlucky, world.fresh("seller"), usd(4_250), item="Tent", source_id=declining, use_balance_first=True
    )
    await expect_declined(world, failed, "do_not_honor")
    await world.event(WalletCredited, account_id=unlucky.account_id, order_id=failed)
    back = await wallet_balance(world, unlucky.account_id, "USD")
    expect(back.amount_minor == 2_000, "the wallet leg paid back", got=str(back))
