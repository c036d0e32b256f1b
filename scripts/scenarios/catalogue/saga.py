"""The order saga's branches (S1 to S5): retries, paying again, windows, compensations, late money.

Time moves by the stack's clock (X8): a retry's backoff, the 30-minute payment window or the
15-day protection pass in a moment, and the saga's durable timers fire as they would.
"""

from __future__ import annotations

from datetime import timedelta

from contracts import (
    AutoReleaseApproaching,
    CommandRejected,
    FundsFrozen,
    FundsReleased,
    OpenDispute,
    OrderStatus,
    PayAgain,
    PaymentCaptured,
    PaymentFailed,
    PaymentRefunded,
    RefundPayment,
    ReleaseFunds,
    WalletCredited,
)
from contracts.disputes import AnswerDispute, DisputeAnswered, DisputeReason, DisputeResolution, ResolveDispute
from scripts.scenarios.outcome import expect
from scripts.scenarios.registry import scenario
from scripts.scenarios.steps import (
    add_card,
    checkout,
    confirm_receipt,
    expect_cancelled,
    expect_declined,
    expect_in_escrow,
    network_book,
    onboard_buyer,
    order_reaches,
    order_statuses,
    reason_code,
    refund_refused,
    top_up,
    usd,
    wallet_balance,
)
from scripts.scenarios.world import World

APPROVING_CARD = "4242424242424242"
DECLINING_CARD = "4000000000000002"  # do not honor
AWAY_FOR_THE_FIRST_ATTEMPT = "4000000000005001"  # unavailable for the first payment attempt only
ALWAYS_AWAY = "4000000000000119"  # the issuer is unavailable
ANSWER_LOST = "4000000000005027"  # charged, but the answer is lost: only a status inquiry tells
A_RETRY_LATER = timedelta(minutes=2)  # more than any payment retry's backoff (saga.toml: at most 1 minute)
PAYMENT_WINDOW_PASSED = timedelta(minutes=31)  # saga.toml: 30 minutes
PROTECTION = timedelta(days=15)  # saga.toml: the standard shipping method's window
REMINDER_BEFORE = timedelta(days=3)


async def pays_again_after(world: World, order_id: str, times: int) -> None:
    """Wait until the order has been retrying ``times`` times, then move the clock past the backoff."""

    def retrying(_seen: object) -> bool:
        return order_statuses(world, order_id).count(OrderStatus.PAYMENT_RETRYING) >= times

    await world.wait_for(retrying, f"order {order_id} to wait for its retry #{times}", timeout=world.timeout * 2)
    world.say(f"retry #{times} is due after its backoff: the clock moves {A_RETRY_LATER}")
    world.clock.advance(A_RETRY_LATER)


@scenario(
    "transient-failure-then-success",
    "The issuer is away for the first attempt: the saga retries after a backoff and the second is captured",
    features=("S2", "P4", "S4"),
)
async def transient_failure_then_success(world: World) -> None:
    """A buyer pays by a card whose issuer is away for the whole first payment attempt (the
    payment service retries the network itself, then gives up: a transient failure). The saga
    does not cancel: it waits out a backoff (the clock moves) and pays again, attempt 2, which
    the network charges. The order reaches escrow; the card was charged once; the buyer never
    hears of a failure."""
    buyer = await onboard_buyer(world)
    source_id, token = await add_card(world, buyer, AWAY_FOR_THE_FIRST_ATTEMPT)
    order_id = await checkout(world, buyer, world.fresh("seller"), usd(3100), item="Kettle", source_id=source_id)
    failed = await world.event(PaymentFailed, order_id=order_id, attempt=1)
    expect(not failed.permanent, "the first attempt to fail transiently", got=f"{failed.reason} {failed.permanent}")
    await pays_again_after(world, order_id, 1)
    await expect_in_escrow(world, order_id)
    captured = await world.event(PaymentCaptured, order_id=order_id)
    expect(captured.attempt == 2, "the second attempt captured", got=captured.attempt)
    book = await world.vault.captures(token)
    expect(book.get("captures") == 1, "the card charged once", got=book)
    expect(
        order_statuses(world, order_id)[:4]
        == [OrderStatus.PAYMENT_PENDING, OrderStatus.PAYMENT_RETRYING, OrderStatus.PAYMENT_PENDING, OrderStatus.PAID],
        "pending → retrying → pending → paid",
        got=order_statuses(world, order_id),
    )


@scenario(
    "retries-exhausted-cancelled",
    "An issuer that is never there: four attempts with backoff, then the order is cancelled with the reason",
    features=("S2", "P4", "S4"),
)
async def retries_exhausted_cancelled(world: World) -> None:
    """A buyer pays by a card whose issuer never answers. Each payment attempt fails
    transiently; the saga tries again after each backoff (the clock moves), four attempts in
    all (saga.toml), then cancels the order naming the reason and the attempts. Nothing was
    charged."""
    buyer = await onboard_buyer(world)
    source_id, token = await add_card(world, buyer, ALWAYS_AWAY)
    order_id = await checkout(world, buyer, world.fresh("seller"), usd(1800), item="Umbrella", source_id=source_id)
    for retry in (1, 2, 3):
        await pays_again_after(world, order_id, retry)
    cancelled = await expect_cancelled(world, order_id, "issuer_unavailable")
    expect(
        "gave up after 4 attempts" in (cancelled.reason or ""), "the reason to count 4 attempts", got=cancelled.reason
    )
    attempts = sorted(f.attempt for f in world.seen(PaymentFailed, order_id=order_id))
    expect(attempts == [1, 2, 3, 4], "four failed attempts", got=attempts)
    book = await world.vault.captures(token)
    expect(book.get("captures") == 0, "nothing charged", got=book)


@scenario(
    "permanent-failure-cancelled",
    "A decline that paying another way cannot fix (over the daily limit) cancels at once, with no retry",
    features=("S2", "P2", "S1"),
)
async def permanent_failure_cancelled(world: World) -> None:
    """A new buyer (L1: 2,500 USD a day in the first 30 days) pays 1,900 USD, then another
    1,900 USD the same day, each confirmed with the PIN. The second is over the daily limit:
    limit_exceeded is in the policy's cancel_at_once list (another card would not change the
    buyer's limit), so the saga cancels at once; it never retries and the buyer is not asked
    to pay again."""
    buyer = await onboard_buyer(world)
    await world.onboarding.set_pin(buyer)
    await top_up(world, buyer.account_id, usd(1_000_000))
    bike = usd(190_000)
    first = await checkout(world, buyer, world.fresh("seller"), bike, item="Bike", with_pin=True)
    await expect_in_escrow(world, first)
    second = await checkout(world, buyer, world.fresh("seller"), bike, item="Second bike", with_pin=True)
    await expect_cancelled(world, second, "limit_exceeded")
    statuses = order_statuses(world, second)
    expect(
        statuses == [OrderStatus.PAYMENT_PENDING, OrderStatus.CANCELLED], "pending → cancelled, no retry", got=statuses
    )
    expect(len(world.seen(PaymentFailed, order_id=second)) == 1, "one attempt only")


@scenario(
    "pay-again-with-another-source",
    "A declined card leaves the order open: the buyer pays again by another card within the window",
    features=("S2", "P1", "X9"),
)
async def pay_again_with_another_source(world: World) -> None:
    """A buyer pays by a card the issuer declines (do_not_honor): the order waits in
    payment_failed with the reason, its payment window still open. The buyer pays again with
    another card (attempt 2), which is charged; the order reaches escrow. The declined card was
    charged nothing, the second exactly once. A stranger cannot pay the order again."""
    buyer = await onboard_buyer(world)
    declining, declined_token = await add_card(world, buyer, DECLINING_CARD)
    approving, approved_token = await add_card(world, buyer, APPROVING_CARD)
    order_id = await checkout(world, buyer, world.fresh("seller"), usd(2750), item="Boots", source_id=declining)
    await expect_declined(world, order_id, "do_not_honor")

    stranger = await world.send(
        PayAgain(order_id=order_id, buyer_id="someone-else", source_id=approving), about=order_id
    )
    refused = await world.answer(stranger, PaymentCaptured)
    expect(
        isinstance(refused, CommandRejected) and refused.code == "not_the_buyer",
        "a stranger's PayAgain refused",
        got=refused,
    )
    world.say(f"{buyer.account_id} pays again, with the other card")
    await world.send(PayAgain(order_id=order_id, buyer_id=buyer.account_id, source_id=approving), about=order_id)
    await order_reaches(world, order_id, OrderStatus.IN_ESCROW)
    captured = await world.event(PaymentCaptured, order_id=order_id)
    expect(captured.attempt == 2, "attempt 2 captured", got=captured.attempt)
    declined_book, approved_book = (
        await world.vault.captures(declined_token),
        await world.vault.captures(approved_token),
    )
    expect(declined_book.get("captures") == 0, "nothing taken from the declined card", got=declined_book)
    expect(approved_book.get("captures") == 1, "the second card charged once", got=approved_book)


@scenario(
    "payment-window-expired",
    "A declined order nobody pays again closes when its 30-minute payment window ends; paying after is refused",
    features=("S4", "S2", "X8"),
)
async def payment_window_expired(world: World) -> None:
    """A buyer's card is declined and the buyer does nothing. The clock moves 31 minutes: the
    payment window's timer fires and the saga cancels the order (payment_window_expired,
    naming the last failure). Paying again afterwards is refused (not_awaiting_payment)."""
    buyer = await onboard_buyer(world)
    declining, _ = await add_card(world, buyer, DECLINING_CARD)
    approving, _ = await add_card(world, buyer, APPROVING_CARD)
    order_id = await checkout(world, buyer, world.fresh("seller"), usd(990), item="Socks", source_id=declining)
    await expect_declined(world, order_id, "do_not_honor")
    world.say(f"nobody pays again; the clock moves {PAYMENT_WINDOW_PASSED}")
    world.clock.advance(PAYMENT_WINDOW_PASSED)
    cancelled = await expect_cancelled(world, order_id, "payment_window_expired")
    expect("do_not_honor" in (cancelled.reason or ""), "the reason to name the last failure", got=cancelled.reason)
    late = await world.send(PayAgain(order_id=order_id, buyer_id=buyer.account_id, source_id=approving), about=order_id)
    answer = await world.answer(late, PaymentCaptured)
    expect(
        isinstance(answer, CommandRejected) and answer.code == "not_awaiting_payment",
        "paying a cancelled order refused",
        got=answer,
    )


@scenario(
    "auto-release-after-window",
    "No confirmation, no dispute: a reminder 3 days before, then the seller is paid when the 15 days end",
    features=("S4", "E2", "N1", "X8"),
)
async def auto_release_after_window(world: World) -> None:
    """A wallet-paid order reaches escrow and the buyer says nothing. The clock moves 12 days
    and a minute: the saga reminds the buyer (AutoReleaseApproaching, naming the release time).
    It moves 3 more days: the protection ends, the saga releases the funds and the seller is
    paid the price."""
    buyer = await onboard_buyer(world)
    await top_up(world, buyer.account_id, usd(5000))
    seller = world.fresh("seller")
    order_id = await checkout(world, buyer, seller, usd(4200), item="Backpack")
    held = await expect_in_escrow(world, order_id)
    expect(held.next_deadline_at is not None, "escrow to announce when the funds are released", got=held)
    world.clock.advance(PROTECTION - REMINDER_BEFORE + timedelta(minutes=1))
    reminder = await world.event(AutoReleaseApproaching, order_id=order_id)
    world.say(f"the buyer is reminded: released at {reminder.release_at:%Y-%m-%d %H:%M} unless disputed")
    world.clock.advance(REMINDER_BEFORE)
    await order_reaches(world, order_id, OrderStatus.COMPLETED)
    paid = await world.event(WalletCredited, account_id=seller, order_id=order_id)
    expect(paid.amount == usd(4200), "the seller paid the price", got=paid.amount)


@scenario(
    "dispute-freezes-release",
    "An open dispute stops the auto-release: the protection ends and nothing moves until an operator decides",
    features=("E3", "S4", "E2"),
)
async def dispute_freezes_release(world: World) -> None:
    """An order in escrow is disputed (not received); escrow freezes the hold. The seller
    answers. The clock moves past the 15-day protection: nothing is released, and confirming
    receipt is refused while disputed. An operator decides for the seller: the funds are
    released (with the dispute's id, ending the freeze) and the seller is paid."""
    buyer = await onboard_buyer(world)
    await top_up(world, buyer.account_id, usd(5000))
    seller = world.fresh("seller")
    order_id = await checkout(world, buyer, seller, usd(3600), item="Lamp")
    await expect_in_escrow(world, order_id)
    dispute_id = world.fresh("dispute")
    opening = OpenDispute(
        order_id=order_id, dispute_id=dispute_id, buyer_id=buyer.account_id, reason=DisputeReason.NOT_RECEIVED
    )
    await world.send(opening, about=order_id)
    await world.event(FundsFrozen, order_id=order_id, dispute_id=dispute_id)
    answer = AnswerDispute(
        order_id=order_id, dispute_id=dispute_id, seller_id=seller, statement="Delivered", evidence=["TRACK-1"]
    )
    await world.send(answer, about=order_id)
    await world.event(DisputeAnswered, order_id=order_id)
    world.clock.advance(PROTECTION + timedelta(days=1))
    await confirm_receipt(world, buyer, order_id)
    refused = await world.event(CommandRejected, subject_id=order_id, rejected_type="ConfirmReceipt")
    expect(refused.code == "not_in_escrow", "confirming a disputed order refused", got=refused.code)
    expect(not world.seen(ReleaseFunds, order_id=order_id), "nothing released while disputed")
    decide = ResolveDispute(
        order_id=order_id,
        dispute_id=dispute_id,
        operator_id="ops-ana",
        resolution=DisputeResolution.RELEASE,
        reason="tracking shows delivery",
    )
    await world.send(decide, about=order_id)
    await order_reaches(world, order_id, OrderStatus.COMPLETED)
    released = await world.event(FundsReleased, order_id=order_id)
    expect(released.amount == usd(3600), "the seller released the whole price", got=released.amount)


@scenario(
    "refund-after-completion",
    "Once the seller is paid, a refund is refused naming why; no money moves",
    features=("P6", "S1", "E2"),
)
async def refund_after_completion(world: World) -> None:
    """A completed order (the buyer confirmed, the seller paid): the marketplace asks for a
    refund and the saga refuses it (not_refundable: the seller has been paid, so the
    marketplace settles it with the seller). Escrow, the buyer's wallet and the seller's stay
    as they were."""
    buyer = await onboard_buyer(world)
    await top_up(world, buyer.account_id, usd(5000))
    seller = world.fresh("seller")
    order_id = await checkout(world, buyer, seller, usd(2500), item="Mug")
    await expect_in_escrow(world, order_id)
    await confirm_receipt(world, buyer, order_id)
    await order_reaches(world, order_id, OrderStatus.COMPLETED)
    before = await wallet_balance(world, buyer.account_id, "USD")
    rejected = await refund_refused(world, order_id, usd(2500), "not_refundable")
    expect("seller has been paid" in rejected.reason, "the refusal to say the seller was paid", got=rejected.reason)
    after = await wallet_balance(world, buyer.account_id, "USD")
    # wallet_balance reads by topping up one cent: the first reading left that cent in the wallet.
    expect(after == before + usd(1), "the buyer's wallet unchanged", got=after)
    expect(not world.seen(RefundPayment, order_id=order_id), "no refund sent to the payment service")


@scenario(
    "late-success-after-cancel-refunded",
    "A charge that lands after the order closed is refunded by the saga, never kept, never reviving the order",
    features=("S5", "S3", "S4"),
)
async def late_success_after_cancel_refunded(world: World) -> None:
    """A buyer pays by a card whose answer is lost: the network charges it but the payment
    service only learns so by a status inquiry. Meanwhile the clock moves past the payment
    window and the saga cancels the order. Then the capture arrives: the saga does not revive
    the order; it compensates, refunding the whole price to the card, and the order stays
    cancelled with the refund counted. The network's book nets to zero."""
    buyer = await onboard_buyer(world)
    source_id, token = await add_card(world, buyer, ANSWER_LOST)
    price = usd(5400)
    order_id = await checkout(world, buyer, world.fresh("seller"), price, item="Speaker", source_id=source_id)
    await order_reaches(world, order_id, OrderStatus.PAYMENT_PENDING)  # its window is set: now let it pass
    world.say(f"the answer is lost; the clock moves {PAYMENT_WINDOW_PASSED}")
    world.clock.advance(PAYMENT_WINDOW_PASSED)
    await expect_cancelled(world, order_id, "payment_window_expired")
    await world.event(PaymentCaptured, order_id=order_id, timeout=world.timeout * 2)
    refunded = await world.event(PaymentRefunded, order_id=order_id, refund_id=f"compensation:{order_id}")
    expect(refunded.refunded == price, "the whole price refunded", got=refunded.refunded)

    def compensated(_seen: object) -> bool:
        return order_statuses(world, order_id).count(OrderStatus.CANCELLED) >= 2

    await world.wait_for(compensated, f"order {order_id} cancelled again with the refund counted")
    statuses = order_statuses(world, order_id)
    expect(OrderStatus.PAID not in statuses, "never paid or in escrow", got=statuses)
    book = (await network_book(world, token)).get("USD", {})
    expect(book.get("net_minor") == 0, "the network's book nets to zero", got=book)


@scenario(
    "hold-refused-compensated",
    "Escrow refuses the hold after the card was charged: the saga refunds the payment and cancels",
    features=("S3", "E1", "S1"),
)
async def hold_refused_compensated(world: World) -> None:
    """A marketplace sends a seller id the ledger cannot name (it holds a ':'). The card is
    charged; then escrow refuses HoldFunds (invalid_party). The saga compensates: it refunds
    the whole payment to the card and cancels the order with the reason; the network's book
    nets to zero and escrow holds nothing."""
    buyer = await onboard_buyer(world)
    source_id, token = await add_card(world, buyer, APPROVING_CARD)
    price = usd(1999)
    odd_seller = f"legacy:{world.fresh('seller')}"
    order_id = await checkout(world, buyer, odd_seller, price, item="Cable", source_id=source_id)
    await world.event(PaymentCaptured, order_id=order_id)
    refused = await world.event(CommandRejected, subject_id=order_id, rejected_type="HoldFunds")
    world.say(f"escrow refused the hold: {refused.code}: {refused.reason}")
    await order_reaches(world, order_id, OrderStatus.COMPENSATING)
    refunded = await world.event(PaymentRefunded, order_id=order_id, refund_id=f"compensation:{order_id}")
    expect(refunded.refunded == price, "the payment refunded in full", got=refunded.refunded)
    final = await order_reaches(world, order_id, OrderStatus.CANCELLED)
    expect(reason_code(final.reason) == "hold_refused", "cancelled because the hold was refused", got=final.reason)
    expect(final.refunded == price, "the refund counted on the order", got=final.refunded)
    book = (await network_book(world, token)).get("USD", {})
    expect(book.get("net_minor") == 0, "the network's book nets to zero", got=book)
