"""Cross-border pricing (P3): a quote per funding type, paid at the quoted rate, the fee, the
promotions of services/payment/data/fees.toml, and the seller paid the price exactly.

The checks recompute every figure from what the quote itself says (its applied rate), by the
rounding rule of services/payment/domain/pricing.py: converted = price x applied rate, rounded
half-up to the buyer currency's minor units; total = converted + fee - discount.
"""

from __future__ import annotations

import tomllib
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal

from contracts import (
    FundingType,
    Money,
    OrderStatus,
    PaymentAuthorized,
    PaymentCaptured,
    PriceBreakdown,
    PriceQuoted,
    RequestQuote,
    WalletCredited,
)
from contracts.money import minor_unit_exponent
from scripts.onboarding import Person
from scripts.scenarios.outcome import ScenarioFailed, expect
from scripts.scenarios.registry import scenario
from scripts.scenarios.steps import (
    add_card,
    checkout,
    confirm_receipt,
    expect_cancelled,
    expect_in_escrow,
    onboard_buyer,
    order_reaches,
    top_up,
    usd,
)
from scripts.scenarios.world import World
from services.payment.domain.pricing import DEFAULT_FEES_FILE

APPROVING_CARD = "4242424242424242"
QUOTE_OUTLIVED = timedelta(minutes=11)  # rates.toml: a quote holds 600 s
WALLET_FEE_WAIVER = "wallet-launch-fee-waiver"


@scenario(
    "fx-jpy-to-usd",
    "A buyer in Japan pays a USD price by card at the quoted JPY rate with the card fee; the seller gets USD",
    features=("P1", "P3", "E2"),
)
async def fx_jpy_to_usd(world: World) -> None:
    """A Japanese buyer (wallet and limits in JPY) is quoted a 25.00 USD price: each funding
    type's breakdown converts it at the quote's applied rate (mid plus the spread) and adds that
    type's cross-border fee, in whole yen. Checking out with the quote and a card, the card is
    charged exactly the quoted yen total; escrow holds the price, and on receipt the US seller
    is paid 25.00 USD. A second quote that outlives its 10 minutes (the clock moves) is refused
    at checkout with quote_expired."""
    buyer = await onboard_buyer(world, country="JP")
    source_id, token = await add_card(world, buyer, APPROVING_CARD)
    seller = world.fresh("seller")
    price = usd(2500)
    order_id, quoted = await request_quote(world, buyer, price)
    card = breakdown_of(quoted, FundingType.CARD)
    check_conversion(card, price, "JPY")
    expect(card.fee.amount_minor > 0, "a cross-border card payment to pay a fee", got=card.fee)

    await checkout(world, buyer, seller, price, source_id=source_id, order_id=order_id, quote_id=quoted.quote_id)
    await expect_in_escrow(world, order_id)
    captured = await world.event(PaymentCaptured, order_id=order_id)
    expect(captured.breakdown == card, "the payment to keep the quoted card breakdown", got=captured.breakdown)
    book = await world.vault.captures(token)
    expect(
        book.get("JPY") == card.total.amount_minor and book["captures"] == 1,
        f"the card charged once, exactly {card.total}",
        got=book,
    )
    await confirm_receipt(world, buyer, order_id)
    await order_reaches(world, order_id, OrderStatus.COMPLETED)
    paid = await world.event(WalletCredited, account_id=seller, order_id=order_id)
    expect(paid.amount == price, f"the seller to be paid the price, {price}", got=paid.amount)
    world.say(f"{seller} is paid {paid.amount}; the buyer paid {card.total} ({card.converted} + fee {card.fee})")

    late_order, late = await request_quote(world, buyer, usd(1000))
    world.say(f"the stack's clock moves {QUOTE_OUTLIVED.seconds // 60} minutes: quote {late.quote_id} runs out")
    world.clock.advance(QUOTE_OUTLIVED)
    await checkout(world, buyer, seller, usd(1000), source_id=source_id, order_id=late_order, quote_id=late.quote_id)
    await expect_cancelled(world, late_order, "quote_expired")


@scenario(
    "fee-waiver-promotion",
    "The wallet launch fee waiver: a cross-border wallet payment pays no fee, a card payment still does",
    features=("P1", "P3"),
)
async def fee_waiver_promotion(world: World) -> None:
    """While the wallet fee waiver of fees.toml runs, a British buyer's quote for a 20.00 USD
    price shows no fee for the wallet (the waiver named) and the card fee for a card. Paying
    from the wallet takes exactly the waived total from the GBP balance. (A British buyer: the
    Asian new-year discount, which would save more, is for buyers in Asia.)"""
    await enter_promotion(world, WALLET_FEE_WAIVER)
    buyer = await onboard_buyer(world, country="GB")
    before = await top_up(world, buyer.account_id, Money(amount_minor=10_000, currency="GBP"))
    price = usd(2000)
    order_id, quoted = await request_quote(world, buyer, price)
    wallet, card = breakdown_of(quoted, FundingType.WALLET), breakdown_of(quoted, FundingType.CARD)
    check_conversion(wallet, price, "GBP")
    expect(
        wallet.fee.amount_minor == 0 and wallet.promotion_id == WALLET_FEE_WAIVER,
        "the wallet's fee waived by the promotion",
        got=wallet,
    )
    expect(card.fee.amount_minor > 0 and card.promotion_id is None, "a card still to pay the fee", got=card)
    world.say(f"quoted: {wallet.total} from the wallet (fee waived), {card.total} by card (fee {card.fee})")

    await checkout(world, buyer, world.fresh("seller"), price, order_id=order_id, quote_id=quoted.quote_id)
    authorized = await world.event(PaymentAuthorized, order_id=order_id)
    await expect_in_escrow(world, order_id)
    expect(
        authorized.amount == wallet.total and authorized.balance == before - wallet.total,
        f"the wallet to pay exactly {wallet.total} of its {before}",
        got=authorized,
    )


async def request_quote(world: World, buyer: Person, price: Money) -> tuple[str, PriceQuoted]:
    """The cashier asks what ``buyer`` pays for a new order of ``price``; the order id and the quote."""
    order_id, quote_id = world.fresh("order"), world.fresh("quote")
    world.say(f"the cashier asks {buyer.account_id}'s price for {order_id} ({price})")
    command = RequestQuote(order_id=order_id, quote_id=quote_id, buyer_id=buyer.account_id, amount=price)
    quoted = await world.reply(await world.send(command, about=order_id), PriceQuoted)
    world.say(f"quote {quote_id} holds until {quoted.expires_at:%H:%M:%S}")
    return order_id, quoted


def breakdown_of(quoted: PriceQuoted, funding_type: FundingType) -> PriceBreakdown:
    for breakdown in quoted.breakdowns:
        if breakdown.funding_type is funding_type:
            return breakdown
    raise ScenarioFailed(f"quote {quoted.quote_id} has no {funding_type.value} price: {quoted.breakdowns}")


def check_conversion(breakdown: PriceBreakdown, price: Money, buyer_currency: str) -> None:
    """The breakdown's figures follow from its own rate by the documented rounding rule."""
    rate = breakdown.rate
    expect(rate is not None and rate.to_currency == buyer_currency, f"a {buyer_currency} rate", got=rate)
    assert rate is not None
    applied, mid = Decimal(rate.applied_rate), Decimal(rate.mid_rate)
    expect(applied > mid, "the applied rate to carry the spread over the mid rate", got=rate)
    exponent = minor_unit_exponent(buyer_currency)
    converted = (price.decimal * applied).quantize(Decimal(1).scaleb(-exponent), rounding=ROUND_HALF_UP)
    expect(
        breakdown.converted.decimal == converted,
        f"{price} at {applied} to be {converted} {buyer_currency}",
        got=breakdown.converted,
    )
    total = breakdown.converted.amount_minor + breakdown.fee.amount_minor - breakdown.discount.amount_minor
    expect(breakdown.total.amount_minor == total, "total = converted + fee - discount", got=breakdown)
    expect(breakdown.settlement == price, f"the seller's settlement to be the price, {price}", got=breakdown)


async def enter_promotion(world: World, promotion_id: str) -> None:
    """Move the stack's clock into the promotion's dates (it only moves forward)."""
    with DEFAULT_FEES_FILE.open("rb") as file:
        rows = tomllib.load(file).get("promotion", [])
    row = next(r for r in rows if r["id"] == promotion_id)
    starts, ends = row["starts_at"], row["ends_at"]  # TOML date-times in UTC
    now = world.clock.now()
    if now >= ends:
        raise ScenarioFailed(
            f"promotion {promotion_id} of {DEFAULT_FEES_FILE.name} ended {ends:%Y-%m-%d}; the stack's clock "
            f"is {now:%Y-%m-%d} (run it on a fresh stack, or give the promotion new dates)"
        )
    if now < starts:
        world.say(f"the stack's clock moves to {starts:%Y-%m-%d}, when {promotion_id} starts")
        world.clock.advance(starts - now + timedelta(minutes=1))
