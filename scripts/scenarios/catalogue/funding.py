"""Funding sources (A4): a card tokenised at the funding network's vault, which later expires."""

from __future__ import annotations

from datetime import timedelta

from scripts.scenarios.registry import scenario
from scripts.scenarios.steps import add_card, checkout, expect_declined, onboard_buyer, usd
from scripts.scenarios.world import World

TEST_CARD = "4242424242424242"  # the simulator's approving Visa (services/funding/data/test_cards.toml)
PAST_EXPIRY = timedelta(days=40)
"""Far enough to leave any card expiring this month behind."""


@scenario(
    "expired-card-refused",
    "A card valid today is added by token; 40 days later a checkout from it is declined with source_expired",
    features=("A4", "P4", "X8"),
)
async def expired_card_refused(world: World) -> None:
    """A bound buyer's app hands a test Visa expiring this month (in the stack's time) to the
    vault and adds the card by its token, brand and last four (the number never reaches Kafka).
    The stack's clock moves 40 days forward, so the card has expired: a checkout paying with it
    is declined for source_expired; the order waits for the buyer to pay another way."""
    buyer = await onboard_buyer(world)
    today = world.clock.now()
    source_id, _ = await add_card(world, buyer, TEST_CARD, month=today.month, year=today.year)
    later = world.clock.advance(PAST_EXPIRY)
    world.say(f"the stack's clock moves {PAST_EXPIRY.days} days forward, to {later:%Y-%m-%d}")
    order_id = await checkout(world, buyer, world.fresh("seller"), usd(4250), item="Sunglasses", source_id=source_id)
    await expect_declined(world, order_id, "source_expired")
