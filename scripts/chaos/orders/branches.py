"""One script per branch (G2), built from the scenario steps (scripts/scenarios/steps.py) and the
catalogue's own (disputes, refunds, security): each plays an :class:`OrderPlan` against the
running stack and returns the order's status where the branch rests, final, or waiting on the
clock (:data:`~scripts.chaos.orders.plans.CLOCK_NEEDS`), which the runner alone moves.

Nothing here assumes it is alone on the stack: every id is the order's own, every wait is for
a message about them.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from contracts import (
    AccountStatus,
    AccountStatusChanged,
    MarketplaceAccessRevoked,
    Money,
    OrderStatus,
    OrderStatusChanged,
    PayAgain,
    RevokeMarketplaceAccess,
    WalletCredited,
)
from contracts.disputes import DisputeResolution
from scripts.chaos.orders.plans import Branch, CardChoice, OrderPlan, Paying
from scripts.chaos.orders.world import OrderWorld
from scripts.onboarding import MARKETPLACE_ID, Person
from scripts.scenarios.catalogue.disputes import open_dispute, operator_resolves, seller_answers
from scripts.scenarios.catalogue.pricing import request_quote
from scripts.scenarios.catalogue.security import fail_checks_until_locked
from scripts.scenarios.outcome import ScenarioFailed
from scripts.scenarios.steps import (
    add_card,
    checkout,
    confirm_receipt,
    expect_declined,
    expect_in_escrow,
    order_reaches,
    refund,
    sealed_password,
    top_up,
)
from services.funding.faults import DECLINING_BEHAVIOURS

FINAL = (OrderStatus.COMPLETED, OrderStatus.CANCELLED, OrderStatus.REFUNDED)
RESTING = (*FINAL, OrderStatus.IN_ESCROW, OrderStatus.PAYMENT_FAILED)
"""Where an order stops until someone acts (or a timer fires): final, held, or declined."""
HOLD_REFUSING_PREFIX = "legacy:"
"""A seller id the ledger cannot name (it holds a ':'): escrow refuses the hold (saga.py's hold-refused)."""


@dataclass
class OrderRun:
    """One order being driven: the plan, its view of the world, what it has made so far, and
    the problems its checks found (a check that fails does not stop the branch)."""

    world: OrderWorld
    plan: OrderPlan
    buyer: Person | None = None
    seller_id: str | None = None
    order_id: str | None = None
    tokens: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def check(self, condition: bool, problem: str) -> None:
        if not condition:
            self.problems.append(problem)

    @property
    def the_buyer(self) -> Person:
        if self.buyer is None:
            raise RuntimeError("the branch acts for its buyer before onboarding one")
        return self.buyer

    @property
    def the_order(self) -> str:
        if self.order_id is None:
            raise RuntimeError("the branch waits on its order before checking it out")
        return self.order_id


Script = Callable[[OrderRun], Awaitable[OrderStatusChanged]]

# ---------------------------------------------------------------------- steps


async def onboarded(run: OrderRun) -> Person:
    """A new buyer of the plan's region and level, bound to the marketplace, with the plan's top-up."""
    world, plan = run.world, run.plan
    buyer = world.person("buyer", country=plan.country)
    world.say(f"{buyer.account_id} registers in {plan.country} at {plan.level} and binds the wallet")
    await world.onboarding.buyer(buyer, plan.level)
    run.buyer = buyer
    if plan.wallet_top_up is not None:
        await top_up(world, buyer.account_id, plan.wallet_top_up)
    return buyer


async def card_added(run: OrderRun, card: CardChoice) -> str:
    """The buyer's app adds ``card`` by a token of its own (one-shot behaviours fire once per token)."""
    source_id, token = await run.world.tokenised(lambda: add_card(run.world, run.the_buyer, card.number()))
    run.tokens.append(token)
    return source_id


async def checked_out(
    run: OrderRun,
    source_id: str | None,
    *,
    seller_id: str | None = None,
    with_pin: bool = False,
    use_balance_first: bool = False,
) -> str:
    """The marketplace checks the plan's price out for the buyer (at a quote, when the plan says)."""
    world, plan, buyer = run.world, run.plan, run.the_buyer
    run.seller_id = seller_id or world.fresh("seller")
    quote_id = None
    if plan.quoted:
        run.order_id, quoted = await request_quote(world, buyer, plan.price)
        quote_id = quoted.quote_id
    else:
        run.order_id = world.fresh("order")
    return await checkout(
        world,
        buyer,
        run.seller_id,
        plan.price,
        item=f"chaos {plan.branch} #{plan.index}",
        source_id=source_id,
        with_pin=with_pin,
        use_balance_first=use_balance_first,
        order_id=run.order_id,
        quote_id=quote_id,
    )


async def first_source(run: OrderRun) -> str | None:
    """The plan's card, added; None when it pays from the wallet."""
    card = run.plan.card
    return await card_added(run, card) if run.plan.paying is Paying.CARD and card is not None else None


async def paid_into_escrow(run: OrderRun, *, seller_id: str | None = None) -> OrderStatusChanged:
    """Onboard, pay the plan's way, and wait for the funds held in escrow."""
    await onboarded(run)
    await checked_out(run, await first_source(run), seller_id=seller_id)
    held = await expect_in_escrow(run.world, run.the_order)
    await charged(run, run.tokens, captures=1)
    return held


async def charged(run: OrderRun, tokens: list[str], *, captures: int) -> None:
    """The network's own book shows ``captures`` captures on each card, whatever it did on the way."""
    for token in tokens:
        book = await run.world.tokenised(functools.partial(run.world.vault.captures, token))
        run.check(book.get("captures") == captures, f"the card charged {captures} time(s), not {book}")


async def rests(run: OrderRun) -> OrderStatusChanged:
    """A new order's first move to where it rests (a final status, escrow, or declined)."""
    return await order_reaches(run.world, run.the_order, *RESTING)


async def ends(run: OrderRun) -> OrderStatusChanged:
    """The order's first final status (once it has been in escrow, its earlier statuses must not count)."""
    return await order_reaches(run.world, run.the_order, *FINAL)


async def received(run: OrderRun) -> OrderStatusChanged:
    """The buyer confirms receipt; the order ends."""
    await confirm_receipt(run.world, run.the_buyer, run.the_order)
    return await ends(run)


def decline_code(card: CardChoice | None) -> str:
    """The reason a decline card's charge is refused with (``do_not_honor``, ...)."""
    if card is None or card.behaviour not in DECLINING_BEHAVIOURS:
        raise ValueError(f"not a decline card: {card}")
    return DECLINING_BEHAVIOURS[card.behaviour].value


# ---------------------------------------------------------------------- the branches


async def happy(run: OrderRun) -> OrderStatusChanged:
    """HAPPY, TRANSIENT, LOST_ANSWER: held (the card charged once), then received."""
    await paid_into_escrow(run)
    return await received(run)


async def declined(run: OrderRun) -> OrderStatusChanged:
    """A decline card: the order waits in payment_failed (the payment window closes it once the
    clock moves); a wallet leg taken first is paid back."""
    await onboarded(run)
    wallet_leg = run.plan.wallet_top_up is not None
    await checked_out(run, await first_source(run), use_balance_first=wallet_leg)
    failed = await expect_declined(run.world, run.the_order, decline_code(run.plan.card))
    await charged(run, run.tokens, captures=0)
    if wallet_leg:
        await run.world.event(WalletCredited, account_id=run.the_buyer.account_id, order_id=run.the_order)
    return failed


async def split_payment(run: OrderRun) -> OrderStatusChanged:
    """The wallet pays what the top-up put in it, the approving card the rest; then received."""
    await onboarded(run)
    await checked_out(run, await first_source(run), use_balance_first=True)
    await expect_in_escrow(run.world, run.the_order)
    await charged(run, run.tokens, captures=1)
    return await received(run)


async def pay_again(run: OrderRun) -> OrderStatusChanged:
    """Declined on the first card; paid again with the second card (or the wallet); received."""
    world, plan = run.world, run.plan
    await onboarded(run)
    declining = await first_source(run)
    second = await card_added(run, plan.second_card) if plan.second_card is not None else None
    await checked_out(run, declining)
    await expect_declined(world, run.the_order, decline_code(plan.card))
    world.say(f"{run.the_buyer.account_id} pays {run.the_order} again, {'by card' if second else 'from the wallet'}")
    again = PayAgain(order_id=run.the_order, buyer_id=run.the_buyer.account_id, source_id=second)
    await world.send(again, about=run.the_order)
    # Its payment_failed has been seen already: only escrow, or the end, may answer the second payment.
    paid = await order_reaches(world, run.the_order, OrderStatus.IN_ESCROW, *FINAL)
    if paid.status is not OrderStatus.IN_ESCROW:
        return paid
    declined_token, *second_tokens = run.tokens
    await charged(run, [declined_token], captures=0)
    await charged(run, second_tokens, captures=1)
    return await received(run)


async def refunded_in_escrow(run: OrderRun) -> OrderStatusChanged:
    """PARTIAL_REFUND (one part, then received) and FULL_REFUND (every part: refunded)."""
    await paid_into_escrow(run)
    for part in run.plan.refunds:
        await refund(run.world, run.the_order, part, reason=f"chaos refund of {part}")
    if run.plan.branch is Branch.FULL_REFUND:
        return await ends(run)
    return await received(run)


RESOLUTIONS: Mapping[Branch, DisputeResolution] = {
    Branch.DISPUTE_REFUND: DisputeResolution.REFUND_IN_FULL,
    Branch.DISPUTE_SPLIT: DisputeResolution.SPLIT,
    Branch.DISPUTE_RELEASE: DisputeResolution.RELEASE,
}


async def disputed(run: OrderRun) -> OrderStatusChanged:
    """The buyer disputes; the seller answers (or not); an operator resolves as the branch says,
    except DISPUTE_SELLER_SILENT, which waits for the seller's deadline (the clock)."""
    world, plan = run.world, run.plan
    await paid_into_escrow(run)
    if plan.dispute_reason is None or run.seller_id is None:
        raise ValueError(f"a dispute plan names its reason: {plan}")
    dispute_id = await open_dispute(world, run.the_buyer, run.the_order, plan.dispute_reason)
    if plan.seller_answers:
        await seller_answers(world, run.seller_id, run.the_order, dispute_id)
    if plan.branch is Branch.DISPUTE_SELLER_SILENT:
        return await order_reaches(world, run.the_order, OrderStatus.DISPUTED, *FINAL)
    resolved = await operator_resolves(
        world, run.the_order, dispute_id, RESOLUTIONS[plan.branch], refund=plan.split_refund
    )
    if plan.split_refund is not None:
        rest = plan.price - plan.split_refund
        run.check(
            (resolved.refund, resolved.release) == (plan.split_refund, rest),
            f"the split {plan.split_refund} back, {rest} released; resolved {resolved.refund} and {resolved.release}",
        )
    return await ends(run)


async def auto_release(run: OrderRun) -> OrderStatusChanged:
    """Held, and nobody confirms: the order waits in escrow for the protection to end (the clock)."""
    return await paid_into_escrow(run)


async def refused_at_checkout(run: OrderRun) -> OrderStatusChanged:
    """OVER_LIMIT, LOCKED_ACCOUNT, BINDING_REVOKED, RETRIES_EXHAUSTED: the checkout ends cancelled."""
    world, plan = run.world, run.plan
    buyer = await onboarded(run)
    if plan.branch is Branch.LOCKED_ACCOUNT:
        await fail_checks_until_locked(world, buyer)
        await world.event(AccountStatusChanged, account_id=buyer.account_id, status=AccountStatus.LOCKED)
    if plan.branch is Branch.BINDING_REVOKED:
        world.say(f"{buyer.account_id} revokes {MARKETPLACE_ID}'s access to the wallet")
        revoke = RevokeMarketplaceAccess(
            account_id=buyer.account_id, marketplace_id=MARKETPLACE_ID, password=sealed_password(world, buyer)
        )
        await world.reply(await world.send(revoke, about=buyer.account_id), MarketplaceAccessRevoked)
    await checked_out(run, await first_source(run))
    return await rests(run)


async def hold_refused(run: OrderRun) -> OrderStatusChanged:
    """Paid for a seller the ledger cannot name: escrow refuses the hold, the saga refunds the payment."""
    await onboarded(run)
    seller_id = HOLD_REFUSING_PREFIX + run.world.fresh("seller")
    await checked_out(run, await first_source(run), seller_id=seller_id)
    return await rests(run)


async def pin_confirmed(run: OrderRun) -> OrderStatusChanged:
    """Above the region's security threshold: the buyer sets a PIN and confirms the order with it."""
    buyer = await onboarded(run)
    await run.world.onboarding.set_pin(buyer)
    await checked_out(run, await first_source(run), with_pin=True)
    await expect_in_escrow(run.world, run.the_order)
    return await received(run)


SCRIPTS: Mapping[Branch, Script] = {
    Branch.HAPPY: happy,
    Branch.DECLINED: declined,
    Branch.TRANSIENT: happy,
    Branch.LOST_ANSWER: happy,
    Branch.PARTIAL_REFUND: refunded_in_escrow,
    Branch.FULL_REFUND: refunded_in_escrow,
    Branch.DISPUTE_REFUND: disputed,
    Branch.DISPUTE_SPLIT: disputed,
    Branch.DISPUTE_RELEASE: disputed,
    Branch.DISPUTE_SELLER_SILENT: disputed,
    Branch.AUTO_RELEASE: auto_release,
    Branch.OVER_LIMIT: refused_at_checkout,
    Branch.LOCKED_ACCOUNT: refused_at_checkout,
    Branch.PAY_AGAIN: pay_again,
    Branch.SPLIT_PAYMENT: split_payment,
    Branch.RETRIES_EXHAUSTED: refused_at_checkout,
    Branch.HOLD_REFUSED: hold_refused,
    Branch.BINDING_REVOKED: refused_at_checkout,
    Branch.PIN_CONFIRMED: pin_confirmed,
}

# ---------------------------------------------------------------------- checks of a final status


async def check_final(run: OrderRun, final: OrderStatusChanged) -> None:
    """What a final status implies for the money: the seller paid what escrow still held (the
    price less the plan's refunds), or the buyer given back the whole price."""
    plan = run.plan
    if final.status is OrderStatus.COMPLETED and run.seller_id is not None:
        try:
            paid = await run.world.event(WalletCredited, account_id=run.seller_id, order_id=run.the_order)
        except ScenarioFailed as missing:
            run.problems.append(f"the seller not paid: {missing}")
            return
        due = released_to_seller(plan)
        run.check(paid.amount == due, f"the seller paid {due}, not {paid.amount}")
    elif final.status is OrderStatus.REFUNDED or plan.branch is Branch.HOLD_REFUSED:
        run.check(final.refunded == plan.price, f"the whole {plan.price} refunded, not {final.refunded}")


def released_to_seller(plan: OrderPlan) -> Money:
    """What a completed order pays its seller: the price less what went back to the buyer."""
    back = [*plan.refunds, *([plan.split_refund] if plan.split_refund is not None else [])]
    return plan.price - sum(back, Money(amount_minor=0, currency=plan.price.currency))
