"""Escrow's release and disputes (E2, E3) and the seller's settlement (E4).

A dispute freezes the hold; the seller answers before a deadline (silence counts for the
buyer); an operator resolves with a full refund, a split stated in minor units, or a release.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx

from contracts import (
    CommandRejected,
    DisputeOpened,
    DisputeResolved,
    FundingType,
    FundsFrozen,
    FundsReleased,
    Money,
    OpenDispute,
    OrderStatus,
    PaymentRefunded,
    WalletCredited,
)
from contracts.disputes import AnswerDispute, DisputeAnswered, DisputeReason, DisputeResolution, ResolveDispute
from scripts.onboarding import Person
from scripts.scenarios.catalogue.pricing import breakdown_of, request_quote
from scripts.scenarios.outcome import expect
from scripts.scenarios.registry import scenario
from scripts.scenarios.steps import (
    add_card,
    checkout,
    confirm_receipt,
    expect_in_escrow,
    onboard_buyer,
    order_reaches,
    top_up,
    usd,
    wallet_balance,
)
from scripts.scenarios.world import World

APPROVING_CARD = "4242424242424242"
SELLER_RESPONSE = timedelta(days=5)  # saga.toml
PROTECTION = timedelta(days=15)


async def paid_into_escrow(world: World, price: Money, item: str) -> tuple[Person, str, str]:
    """A buyer with enough in the wallet pays a new seller ``price``; (buyer, seller id, order id) once in escrow."""
    buyer = await onboard_buyer(world)
    await top_up(world, buyer.account_id, Money(amount_minor=price.amount_minor * 2, currency=price.currency))
    seller = world.fresh("seller")
    order_id = await checkout(world, buyer, seller, price, item=item)
    await expect_in_escrow(world, order_id)
    return buyer, seller, order_id


async def open_dispute(world: World, buyer: Person, order_id: str, reason: DisputeReason) -> str:
    dispute_id = world.fresh("dispute")
    world.say(f"{buyer.account_id} disputes {order_id}: {reason.value}")
    command = OpenDispute(
        order_id=order_id,
        dispute_id=dispute_id,
        buyer_id=buyer.account_id,
        reason=reason,
        description="see the photos",
        evidence=["photo-1"],
    )
    await world.send(command, about=order_id)
    opened = await world.event(DisputeOpened, order_id=order_id, dispute_id=dispute_id)
    await world.event(FundsFrozen, order_id=order_id, dispute_id=dispute_id)
    world.say(f"escrow freezes {opened.amount}; the seller must answer by {opened.answer_by:%Y-%m-%d %H:%M}")
    return dispute_id


async def seller_answers(world: World, seller: str, order_id: str, dispute_id: str) -> None:
    world.say(f"{seller} answers the dispute")
    answer = AnswerDispute(order_id=order_id, dispute_id=dispute_id, seller_id=seller, statement="It left intact")
    await world.send(answer, about=order_id)
    await world.event(DisputeAnswered, order_id=order_id, dispute_id=dispute_id)


async def operator_resolves(
    world: World, order_id: str, dispute_id: str, resolution: DisputeResolution, *, refund: Money | None = None
) -> DisputeResolved:
    world.say(f"operator ops-ana resolves {dispute_id}: {resolution.value}" + (f", {refund} back" if refund else ""))
    decide = ResolveDispute(
        order_id=order_id,
        dispute_id=dispute_id,
        operator_id="ops-ana",
        resolution=resolution,
        refund=refund,
        reason="evidence reviewed",
    )
    await world.send(decide, about=order_id)
    return await world.event(DisputeResolved, order_id=order_id, dispute_id=dispute_id)


@scenario(
    "release-on-confirm",
    "The buyer confirms receipt: escrow releases the hold and the seller's wallet is paid the price",
    features=("E2", "E1", "S1"),
)
async def release_on_confirm(world: World) -> None:
    """A wallet-paid 64.00 USD order reaches escrow; the buyer confirms the goods arrived. The
    saga asks escrow to release, escrow posts the pending hold to the seller's payable, and the
    seller's wallet is credited exactly 64.00 USD. The books audit after the scenario checks
    the ledger."""
    buyer, seller, order_id = await paid_into_escrow(world, usd(6400), "Jacket")
    await confirm_receipt(world, buyer, order_id)
    released = await world.event(FundsReleased, order_id=order_id)
    expect(released.amount == usd(6400), "escrow to release the price", got=released.amount)
    await order_reaches(world, order_id, OrderStatus.COMPLETED)
    credited = await world.event(WalletCredited, account_id=seller, order_id=order_id)
    expect(credited.amount == usd(6400), "the seller paid 64.00 USD", got=credited.amount)


@scenario(
    "dispute-full-refund",
    "Damaged goods: the seller answers, the operator refunds in full, the buyer's wallet is whole again",
    features=("E3", "P6", "S1"),
)
async def dispute_full_refund(world: World) -> None:
    """A buyer disputes a 30.00 USD order as damaged; escrow freezes it. The seller answers;
    the operator decides a full refund: escrow gives the frozen hold back, the payment refunds
    the wallet, and the order is refunded. The seller is paid nothing."""
    buyer, seller, order_id = await paid_into_escrow(world, usd(3000), "Vase")
    before = await wallet_balance(world, buyer.account_id, "USD")
    dispute_id = await open_dispute(world, buyer, order_id, DisputeReason.DAMAGED)
    await seller_answers(world, seller, order_id, dispute_id)
    resolved = await operator_resolves(world, order_id, dispute_id, DisputeResolution.REFUND_IN_FULL)
    expect((resolved.refund, resolved.release) == (usd(3000), usd(0)), "all back to the buyer", got=resolved)
    final = await order_reaches(world, order_id, OrderStatus.REFUNDED)
    expect(final.refunded == usd(3000), "the order refunded in full", got=final.refunded)
    after = await wallet_balance(world, buyer.account_id, "USD")
    # wallet_balance reads by topping up one cent: the first reading left that cent in the wallet.
    expect(after == before + usd(3000) + usd(1), "the buyer's wallet 30.00 USD fuller", got=after)
    expect(not world.seen(WalletCredited, account_id=seller), "the seller paid nothing")


@scenario(
    "dispute-partial-refund",
    "Not as described: the operator splits 42.50 USD into 15.33 back to the buyer and 27.17 to the seller",
    features=("E3", "E1", "P6"),
)
async def dispute_partial_refund(world: World) -> None:
    """A buyer disputes a 42.50 USD order as not as described. The operator splits it: 15.33
    USD back to the buyer, the rest to the seller. Escrow returns the buyer's part, the payment
    refunds it, then escrow releases what it still holds: exactly 27.17 USD, credited to the
    seller. Nothing is lost to rounding: 15.33 + 27.17 = 42.50."""
    price, back = usd(4250), usd(1533)
    buyer, seller, order_id = await paid_into_escrow(world, price, "Dress")
    dispute_id = await open_dispute(world, buyer, order_id, DisputeReason.NOT_AS_DESCRIBED)
    resolved = await operator_resolves(world, order_id, dispute_id, DisputeResolution.SPLIT, refund=back)
    expect((resolved.refund, resolved.release) == (back, usd(2717)), "15.33 back, 27.17 released", got=resolved)
    refunded = await world.event(PaymentRefunded, order_id=order_id)
    expect(refunded.refunded == back, "the buyer refunded 15.33 USD", got=refunded.refunded)
    await order_reaches(world, order_id, OrderStatus.COMPLETED)
    credited = await world.event(WalletCredited, account_id=seller, order_id=order_id)
    expect(credited.amount == usd(2717), "the seller paid 27.17 USD", got=credited.amount)
    expect(refunded.refunded + credited.amount == price, "the parts sum to the price exactly")


@scenario(
    "dispute-seller-silent",
    "The seller does not answer within 5 days: that counts for the buyer, refunded in full",
    features=("E3", "S4", "X8"),
)
async def dispute_seller_silent(world: World) -> None:
    """A buyer disputes an order as not received and the seller says nothing. The clock moves
    5 days and a minute: the seller's deadline passes, the saga resolves the dispute for the
    buyer (decided by the deadline) and the whole price goes back."""
    buyer, _seller, order_id = await paid_into_escrow(world, usd(2200), "Charger")
    dispute_id = await open_dispute(world, buyer, order_id, DisputeReason.NOT_RECEIVED)
    world.clock.advance(SELLER_RESPONSE + timedelta(minutes=1))
    resolved = await world.event(DisputeResolved, order_id=order_id, dispute_id=dispute_id)
    expect(resolved.decided_by == "deadline", "decided by the seller's deadline", got=resolved.decided_by)
    expect(resolved.resolution is DisputeResolution.REFUND_IN_FULL, "a full refund", got=resolved.resolution)
    final = await order_reaches(world, order_id, OrderStatus.REFUNDED)
    expect(final.refunded == usd(2200), "refunded in full", got=final.refunded)


@scenario(
    "dispute-after-deadline-refused",
    "After the 15-day protection ended (and the seller was paid), a dispute is refused naming the deadline",
    features=("E3", "E2", "S4"),
)
async def dispute_after_deadline_refused(world: World) -> None:
    """An order in escrow is left alone; the clock moves past its 15-day protection and the
    funds are released to the seller. The buyer then opens a dispute: refused
    (dispute_window_closed, naming when the protection ended); nothing is frozen."""
    buyer, seller, order_id = await paid_into_escrow(world, usd(1500), "Scarf")
    world.clock.advance(PROTECTION + timedelta(minutes=1))
    await order_reaches(world, order_id, OrderStatus.COMPLETED)
    await world.event(WalletCredited, account_id=seller, order_id=order_id)
    dispute_id = world.fresh("dispute")
    late = OpenDispute(
        order_id=order_id, dispute_id=dispute_id, buyer_id=buyer.account_id, reason=DisputeReason.DAMAGED
    )
    sent = await world.send(late, about=order_id)
    answer = await world.answer(sent, DisputeOpened)
    expect(
        isinstance(answer, CommandRejected) and answer.code == "dispute_window_closed",
        "the dispute refused: the protection ended",
        got=answer,
    )
    expect(not world.seen(FundsFrozen, order_id=order_id), "nothing frozen")


@scenario(
    "settlement-cross-currency",
    "A JPY card payment for a USD price: the seller's settlement is in USD, the fee in the buyer's currency",
    features=("E4", "P3", "E1"),
)
async def settlement_cross_currency(world: World) -> None:
    """A Japanese buyer pays a 25.00 USD price by card at the quoted rate plus the card fee (in
    JPY, booked to fee revenue by escrow); on receipt escrow releases, and the seller's
    settlement report for the day shows the one order and 25.00 USD payable to the seller, in
    the seller's currency, the fee not taken from it (the buyer paid it on top)."""
    buyer = await onboard_buyer(world, country="JP")
    source_id, _token = await add_card(world, buyer, APPROVING_CARD)
    seller, price = world.fresh("seller"), usd(2500)
    order_id, quoted = await request_quote(world, buyer, price)
    card = breakdown_of(quoted, FundingType.CARD)
    await checkout(world, buyer, seller, price, source_id=source_id, order_id=order_id, quote_id=quoted.quote_id)
    await expect_in_escrow(world, order_id)
    await confirm_receipt(world, buyer, order_id)
    await order_reaches(world, order_id, OrderStatus.COMPLETED)
    day = world.clock.now().date().isoformat()
    report = await asyncio.to_thread(
        lambda: httpx.get(
            f"{world.endpoint('escrow')}/settlements", params={"seller_id": seller, "day": day}, timeout=10
        ).json()
    )
    world.say(f"settlement of {seller} on {day}: {report.get('count')} order(s), {report.get('totals')}")
    expect(report.get("count") == 1, "one settled order for the seller that day", got=report)
    expect(report.get("totals") == [price.model_dump()], f"{price} payable to the seller", got=report.get("totals"))
    released = [r["order_id"] for r in report.get("releases", [])]
    expect(released == [order_id], "the release of this order", got=released)
    world.say(f"the buyer paid {card.total} ({card.converted} + fee {card.fee}); the seller is owed {price}")
