"""Marketplace binding (A5): a grant is refused for another person's profile; a revoked one stops payments."""

from __future__ import annotations

from datetime import timedelta

from contracts import (
    BindingScope,
    CommandRejected,
    GrantMarketplaceAccess,
    MarketplaceAccessGranted,
    MarketplaceAccessRevoked,
    RevokeMarketplaceAccess,
)
from scripts.onboarding import MARKETPLACE_ID
from scripts.scenarios.outcome import expect
from scripts.scenarios.registry import scenario
from scripts.scenarios.steps import (
    checkout,
    expect_cancelled,
    onboard_buyer,
    sealed_password,
    top_up,
    usd,
    wallet_balance,
)
from scripts.scenarios.world import World


@scenario(
    "binding-name-mismatch",
    "A grant whose marketplace profile names someone else is refused with binding_name_mismatch",
    features=("A5",),
)
async def binding_name_mismatch(world: World) -> None:
    """A registered buyer grants the marketplace access, but the marketplace profile's legal
    name is not the wallet account's: the account service refuses with binding_name_mismatch,
    naming legal_name, and no grant is made."""
    buyer = world.person("buyer", full_name="Ana Li")
    world.say(f"{buyer.account_id} ({buyer.full_name}) registers and proves the phone")
    await world.onboarding.register(buyer)
    world.say(f"{buyer.account_id} grants {MARKETPLACE_ID} access from a profile in the name of Someone Else")
    grant = GrantMarketplaceAccess(
        account_id=buyer.account_id,
        marketplace_id=MARKETPLACE_ID,
        scopes=[BindingScope.PAY, BindingScope.REFUND],
        expires_at=world.clock.now() + timedelta(days=365),
        profile_legal_name="Someone Else",
        profile_country=buyer.country,
        password=sealed_password(world, buyer),
    )
    answer = await world.answer(await world.send(grant, about=buyer.account_id), MarketplaceAccessGranted)
    expect(isinstance(answer, CommandRejected), "the grant to be refused", got=type(answer).__name__)
    assert isinstance(answer, CommandRejected)
    expect(answer.code == "binding_name_mismatch", "code binding_name_mismatch", got=answer.code)
    expect("legal_name" in answer.reason, "a reason naming legal_name", got=answer.reason)
    expect(not world.seen(MarketplaceAccessGranted, account_id=buyer.account_id), "no MarketplaceAccessGranted")
    world.say(f"refused: {answer.reason}")


@scenario(
    "binding-revoked-payment-refused",
    "After the buyer revokes the marketplace's grant, its checkout is cancelled with binding_missing",
    features=("A5", "P4", "S1"),
)
async def binding_revoked_payment_refused(world: World) -> None:
    """A bound buyer with 100.00 USD revokes the marketplace's access (confirmed with the
    password). The marketplace then checks out an order: the account declines it for
    binding_missing, the order is cancelled, and the wallet still holds 100.00 USD."""
    buyer = await onboard_buyer(world)
    await top_up(world, buyer.account_id, usd(10000))
    world.say(f"{buyer.account_id} revokes {MARKETPLACE_ID}'s access to the wallet")
    revoke = RevokeMarketplaceAccess(
        account_id=buyer.account_id, marketplace_id=MARKETPLACE_ID, password=sealed_password(world, buyer)
    )
    await world.reply(await world.send(revoke, about=buyer.account_id), MarketplaceAccessRevoked)
    order_id = await checkout(world, buyer, world.fresh("seller"), usd(4250), item="Headphones")
    await expect_cancelled(world, order_id, "binding_missing")
    balance = await wallet_balance(world, buyer.account_id, "USD")
    expect(balance == usd(10000), "the wallet to still hold 100.00 USD", got=balance)
