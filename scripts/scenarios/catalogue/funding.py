"""Funding sources (A4): a card tokenised at the funding network's vault, which later expires."""

from __future__ import annotations

from datetime import timedelta

from contracts import AddCard, FundingSourceAdded
from scripts.scenarios.outcome import expect
from scripts.scenarios.registry import scenario
from scripts.scenarios.steps import checkout, expect_cancelled, onboard_buyer, usd
from scripts.scenarios.world import World

TEST_CARD = "4242424242424242"  # the simulator's approving Visa (services/funding/data/test_cards.toml)
PAST_EXPIRY = timedelta(days=40)
"""Far enough to leave any card expiring this month behind."""


@scenario(
    "expired-card-refused",
    "A card valid today is added by token; 40 days later a checkout from it is cancelled with source_expired",
    features=("A4", "P4", "X8"),
)
async def expired_card_refused(world: World) -> None:
    """A bound buyer's app hands a test Visa expiring this month (in the stack's time) to the
    vault and adds the card by its token, brand and last four (the number never reaches Kafka).
    The stack's clock moves 40 days forward, so the card has expired: a checkout paying with it
    is declined for source_expired and the order is cancelled."""
    buyer = await onboard_buyer(world)
    today = world.clock.now()
    card = await world.vault.tokenize_card(TEST_CARD, today.month, today.year, "123")
    world.say(f"the vault tokenises a {card.brand} ending {card.last4}, expiring {today.month:02d}/{today.year}")
    source_id = world.fresh("card")
    add = AddCard(
        account_id=buyer.account_id,
        source_id=source_id,
        token=card.token,
        brand=card.brand,
        last4=card.last4,
        expiry_month=card.expiry_month,
        expiry_year=card.expiry_year,
    )
    added = await world.reply(await world.send(add, about=buyer.account_id), FundingSourceAdded)
    expect(added.source.last4 == card.last4, f"the card ending {card.last4} added", got=added.source)
    later = world.clock.advance(PAST_EXPIRY)
    world.say(f"the stack's clock moves {PAST_EXPIRY.days} days forward, to {later:%Y-%m-%d}")
    order_id = await checkout(world, buyer, world.fresh("seller"), usd(4250), item="Sunglasses", source_id=source_id)
    await expect_cancelled(world, order_id, "source_expired")
