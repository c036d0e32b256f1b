"""The seeded order mix (G2): every branch the product has, and which choices each order makes.

:func:`plan_orders` is pure: ``random.Random(f"{seed}:orders")`` draws every choice (branch,
buyer's region, price and its currency, how the buyer pays, which test card, refunds, splits),
so a seed gives the same list in any process. Amounts are drawn as integer minor units between
bounds taken from the product's own data (a region's security-check threshold and limits,
services/account/data/regions.toml; mid rates, services/payment/data/rates.toml), so an
ordinary order never needs the PIN and an over-limit one is over whatever its currency.

Nothing here reaches the stack; :mod:`scripts.chaos.orders.branches` plays each plan.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from enum import StrEnum
from functools import cache

from contracts import Money, VerificationLevel
from contracts.disputes import DisputeReason
from contracts.funding_sources import CardBrand
from contracts.money import minor_unit_exponent
from services.account.domain.regions import Region, default_regions
from services.funding.cards import CVC_LENGTHS, Behaviour, ScriptedCard
from services.funding.faults import DECLINING_BEHAVIOURS
from services.funding.vault import load_scripted_cards
from services.payment.domain.network import FIRST_BACKOFF
from services.payment.domain.network import MAX_ATTEMPTS as NETWORK_ATTEMPTS
from services.payment.domain.pricing import BASE_CURRENCY, default_rates
from services.saga.domain.policy import RetryPolicy, default_policy


class Branch(StrEnum):
    """Every way an order can go, as the scenario catalogue scripts them (scripts/scenarios/catalogue)."""

    HAPPY = "happy"  # wallet or card (at a quote, sometimes), escrow, receipt: completed, seller paid
    DECLINED = "declined"  # a decline card (after a wallet leg, sometimes): payment failed; the window closes it
    TRANSIENT = "transient"  # the network times out once, or is away for the first attempt: retried, completed
    LOST_ANSWER = "lost_answer"  # charged but the answer lost: a status inquiry finds it, charged once
    PARTIAL_REFUND = "partial_refund"  # part refunded in escrow, then receipt: the rest to the seller
    FULL_REFUND = "full_refund"  # refunded in escrow in one to three parts: refunded
    DISPUTE_REFUND = "dispute_refund"  # the operator refunds the dispute in full
    DISPUTE_SPLIT = "dispute_split"  # the operator splits it in minor units
    DISPUTE_RELEASE = "dispute_release"  # the operator releases it to the seller
    DISPUTE_SELLER_SILENT = "dispute_seller_silent"  # the seller never answers: the deadline refunds (clock)
    AUTO_RELEASE = "auto_release"  # no receipt: released when the protection ends (clock)
    OVER_LIMIT = "over_limit"  # above the level's per-payment limit: cancelled at once
    LOCKED_ACCOUNT = "locked_account"  # wrong passwords lock the account: its checkout is cancelled
    PAY_AGAIN = "pay_again"  # declined, then paid again another way within the window: completed
    SPLIT_PAYMENT = "split_payment"  # the wallet pays what it holds, a card the rest: completed
    RETRIES_EXHAUSTED = "retries_exhausted"  # an issuer never there: every attempt fails, cancelled
    HOLD_REFUSED = "hold_refused"  # escrow refuses the hold after the charge: compensated, cancelled
    BINDING_REVOKED = "binding_revoked"  # the buyer revoked the marketplace's grant: cancelled at once
    PIN_CONFIRMED = "pin_confirmed"  # above the security threshold, confirmed with the PIN: completed


class Paying(StrEnum):
    """What the order's first payment comes from."""

    WALLET = "wallet"
    CARD = "card"


FINAL_WORDS = "completed", "refunded", "cancelled"

EXPECTED: Mapping[Branch, str] = {
    Branch.HAPPY: "completed",
    Branch.DECLINED: "cancelled: payment_window_expired",
    Branch.TRANSIENT: "completed",
    Branch.LOST_ANSWER: "completed",
    Branch.PARTIAL_REFUND: "completed",
    Branch.FULL_REFUND: "refunded",
    Branch.DISPUTE_REFUND: "refunded",
    Branch.DISPUTE_SPLIT: "completed",
    Branch.DISPUTE_RELEASE: "completed",
    Branch.DISPUTE_SELLER_SILENT: "refunded",
    Branch.AUTO_RELEASE: "completed",
    Branch.OVER_LIMIT: "cancelled: limit_exceeded",
    Branch.LOCKED_ACCOUNT: "cancelled: account_locked",
    Branch.PAY_AGAIN: "completed",
    Branch.SPLIT_PAYMENT: "completed",
    Branch.RETRIES_EXHAUSTED: "cancelled: issuer_unavailable",
    Branch.HOLD_REFUSED: "cancelled: hold_refused",
    Branch.BINDING_REVOKED: "cancelled: binding_missing",
    Branch.PIN_CONFIRMED: "completed",
}
"""What each branch ends in once settled: the order's final status, with its reason's code when cancelled."""

# ---------------------------------------------------------------------- the clock (X8)

_MARGIN = timedelta(minutes=1)
_POLICY = default_policy()
CLOCK_NEEDS: Mapping[Branch, timedelta] = {
    Branch.AUTO_RELEASE: _POLICY.protection.window(None) + _MARGIN,  # saga.toml: 15 days
    Branch.DECLINED: _POLICY.payment.window + _MARGIN,  # 30 minutes: the payment window closes it
    Branch.DISPUTE_SELLER_SILENT: _POLICY.dispute.seller_response + _MARGIN,  # 5 days to answer
}
"""The branches :func:`~scripts.chaos.orders.drive` leaves waiting on a timer, and how far the
clock must move (from when they were driven) for the timer to fire."""
CLOCK_MOVE_TO_SETTLE: timedelta = max(CLOCK_NEEDS.values())
"""One move of the stack's clock, once no order is being driven, that fires every timer a
driven order waits on; then :func:`~scripts.chaos.orders.settle` each."""


def _retry_waits(policy: RetryPolicy) -> timedelta:
    """The longest a payment that keeps failing transiently waits by design before it is given
    up: the saga's backoffs between its attempts (jitter at its top) and, within each attempt,
    the payment service's own retries of the network (services/payment/domain/network.py)."""
    saga = sum(
        min(
            policy.initial_interval.total_seconds() * policy.backoff_coefficient ** (n - 1),
            policy.maximum_interval.total_seconds(),
        )
        for n in range(1, policy.maximum_attempts)
    ) * (1 + policy.jitter)
    network = sum(FIRST_BACKOFF.total_seconds() * 2 ** (n - 1) for n in range(1, NETWORK_ATTEMPTS))
    return timedelta(seconds=saga + network * policy.maximum_attempts)


SCHEDULED_WAIT: Mapping[Branch, timedelta] = {Branch.RETRIES_EXHAUSTED: _retry_waits(_POLICY.payment.retry)}
"""Branches whose path waits on real-time retry timers (not the stack's clock moved by hand):
the chaos run's bound on time to final after the faults stop is extended by this much for them."""

# ---------------------------------------------------------------------- the weights

DEFAULT_WEIGHTS: Mapping[Branch, int] = {
    Branch.HAPPY: 12,
    Branch.DECLINED: 5,
    Branch.TRANSIENT: 5,
    Branch.LOST_ANSWER: 5,
    Branch.PARTIAL_REFUND: 5,
    Branch.FULL_REFUND: 5,
    Branch.DISPUTE_REFUND: 3,
    Branch.DISPUTE_SPLIT: 3,
    Branch.DISPUTE_RELEASE: 3,
    Branch.DISPUTE_SELLER_SILENT: 3,
    Branch.AUTO_RELEASE: 5,
    Branch.OVER_LIMIT: 3,
    Branch.LOCKED_ACCOUNT: 2,  # five wrong passwords each: slow, and argon2 is the account's CPU
    Branch.PAY_AGAIN: 4,
    Branch.SPLIT_PAYMENT: 4,
    Branch.RETRIES_EXHAUSTED: 2,  # waits out every backoff in real time (a few seconds each)
    Branch.HOLD_REFUSED: 3,
    Branch.BINDING_REVOKED: 2,
    Branch.PIN_CONFIRMED: 3,
}

# ---------------------------------------------------------------------- markets and amounts

BUYER_COUNTRIES = ("US", "US", "GB", "DE", "FR", "JP", "KR", "BR", "CL", "MX")
"""Buyers' regions (the US twice: most orders are domestic dollars); currencies with 0 and 2 digits."""
PRICE_CURRENCIES = ("USD", "USD", "EUR", "GBP", "JPY", "KWD")
"""Sellers' price currencies besides the buyer's own (KWD: three digits)."""

ORDINARY_SHARE = Decimal("0.6")
"""An ordinary price stays below this share of the region's security threshold (no PIN needed)."""
PIN_SHARES = (Decimal("1.2"), Decimal(3))
"""A PIN-confirmed price, as shares of the threshold (below every region's L1 per-payment limit)."""
OVER_LIMIT_SHARES = (Decimal("1.2"), Decimal(2))
"""An over-limit price, as shares of the level's per-payment limit."""
TOP_UP_HEADROOM = 2
"""A wallet that pays the whole price is topped up with this many times its estimate (the spread and fee fit)."""
SPLIT_SHARES = (10, 80)
"""A wallet leg, as a percentage of the price's estimate in the buyer's currency (the card pays the rest)."""


@dataclass(frozen=True, slots=True)
class CardChoice:
    """One of the funding simulator's test cards (services/funding/data/test_cards.toml), named
    without its number: the number is looked up only when the card is tokenised."""

    behaviour: Behaviour
    brand: CardBrand
    last4: str

    def number(self) -> str:
        return next(c.number for c in _test_cards() if _choice(c) == self)


@dataclass(frozen=True, slots=True)
class OrderPlan:
    """Everything one order of the run will do, drawn from the seed."""

    index: int
    branch: Branch
    price: Money
    """The seller's price (the buyer pays it converted to their currency, with the fee)."""
    seed: int
    country: str
    """The buyer's region: the wallet's currency and limits."""
    paying: Paying
    card: CardChoice | None = None
    """The card the first payment charges (or is declined on)."""
    wallet_top_up: Money | None = None
    """Test money put in the wallet first (in the buyer's currency); None: nothing."""
    second_card: CardChoice | None = None
    """PAY_AGAIN: the card paid with the second time (None: the wallet)."""
    refunds: tuple[Money, ...] = ()
    """PARTIAL_REFUND: the one part refunded; FULL_REFUND: the parts, summing to the price."""
    split_refund: Money | None = None
    """DISPUTE_SPLIT: what goes back to the buyer; the rest is released to the seller."""
    dispute_reason: DisputeReason | None = None
    seller_answers: bool = False
    level: VerificationLevel = VerificationLevel.L1
    quoted: bool = False
    """Checked out at a quote (RequestQuote, P3) rather than at the rate of the moment."""

    @property
    def expected(self) -> str:
        return EXPECTED[self.branch]

    @property
    def waits_on_clock(self) -> timedelta | None:
        """How far the clock must move for this order to end (None: it ends on its own)."""
        return CLOCK_NEEDS.get(self.branch)

    @property
    def tag(self) -> str:
        """Part of every id the order makes (``order-s7n12-...``): the plan that made it."""
        return f"s{self.seed}n{self.index}"


def plan_orders(seed: int, count: int, weights: Mapping[Branch, int] | None = None) -> list[OrderPlan]:
    """``count`` orders drawn from ``seed``: the same seed gives the same list.

    The first orders take every branch of positive weight once (in a seeded order), so any run
    of at least that many covers the whole product; the rest are drawn by ``weights``
    (default :data:`DEFAULT_WEIGHTS`; a branch left out of a mapping given is never drawn). The
    first n orders of a longer list are the list of n.
    """
    if count < 0:
        raise ValueError(f"count must not be negative, not {count}")
    chosen = dict(DEFAULT_WEIGHTS if weights is None else weights)
    if any(w < 0 for w in chosen.values()):
        raise ValueError(f"weights must not be negative: {chosen}")
    branches = [b for b in Branch if chosen.get(b, 0) > 0]
    if not branches:
        raise ValueError("at least one branch needs a positive weight")
    rng = random.Random(f"{seed}:orders")  # noqa: S311 - a simulation's draw, replayed from its seed
    first = rng.sample(branches, len(branches))
    odds = [chosen[b] for b in branches]
    # Each order draws its branch then its choices, in turn: a shorter run is the start of a longer one.
    return [
        _plan(rng, seed, index, first[index] if index < len(first) else rng.choices(branches, odds)[0])
        for index in range(count)
    ]


def _plan(rng: random.Random, seed: int, index: int, branch: Branch) -> OrderPlan:
    """One order's choices: the common ones first (every order draws them, whatever its branch),
    then its branch's."""
    country = rng.choice(BUYER_COUNTRIES)
    region = default_regions().get(country)
    currency = rng.choice((*PRICE_CURRENCIES, region.currency))
    price = _draw(rng, _usd_in(region.currency, 1), _times(region.security_check_above, ORDINARY_SHARE), currency)
    by_wallet = rng.random() < 0.5
    plan = OrderPlan(
        index=index,
        branch=branch,
        price=price,
        seed=seed,
        country=country,
        paying=Paying.WALLET if by_wallet else Paying.CARD,
        card=None if by_wallet else _pick(rng, Behaviour.APPROVE),
        wallet_top_up=_top_up(price, region) if by_wallet else None,
    )
    shape = _SHAPES.get(branch)
    return plan if shape is None else shape(rng, plan, region)


def _at_a_quote(rng: random.Random, plan: OrderPlan, _region: Region) -> OrderPlan:
    return replace(plan, quoted=rng.random() < 0.3)


def _card_first(rng: random.Random, plan: OrderPlan, region: Region) -> OrderPlan:
    """DECLINED: a decline card, after a wallet leg sometimes; SPLIT_PAYMENT: a wallet leg, then an approving card."""
    behaviour = rng.choice(sorted(DECLINING_BEHAVIOURS)) if plan.branch is Branch.DECLINED else Behaviour.APPROVE
    split = plan.branch is Branch.SPLIT_PAYMENT or rng.random() < 0.3
    leg = _share(_estimate(plan.price, region.currency), rng.randint(*SPLIT_SHARES)) if split else None
    return replace(plan, paying=Paying.CARD, card=_pick(rng, behaviour), wallet_top_up=leg)


def _declined_then_again(rng: random.Random, plan: OrderPlan, _region: Region) -> OrderPlan:
    """PAY_AGAIN: a decline card first, then the approving card drawn for every plan, or the wallet."""
    declining = _pick(rng, rng.choice(sorted(DECLINING_BEHAVIOURS)))
    return replace(plan, paying=Paying.CARD, card=declining, second_card=plan.card)


def _network_fault(rng: random.Random, plan: OrderPlan, _region: Region) -> OrderPlan:
    card = _pick(rng, rng.choice(NETWORK_FAULTS[plan.branch]))
    return replace(plan, paying=Paying.CARD, card=card, wallet_top_up=None)


def _refunded_in_escrow(rng: random.Random, plan: OrderPlan, _region: Region) -> OrderPlan:
    if plan.branch is Branch.PARTIAL_REFUND:
        return replace(plan, refunds=_parts(rng, plan.price, 1, whole=False))
    return replace(plan, refunds=_parts(rng, plan.price, rng.randint(1, 3), whole=True))


def _disputed(rng: random.Random, plan: OrderPlan, _region: Region) -> OrderPlan:
    split = _parts(rng, plan.price, 1, whole=False)[0] if plan.branch is Branch.DISPUTE_SPLIT else None
    answers = plan.branch is not Branch.DISPUTE_SELLER_SILENT and rng.random() < 0.5
    reason = rng.choice(list(DisputeReason))
    return replace(plan, split_refund=split, dispute_reason=reason, seller_answers=answers)


def _over_limit(rng: random.Random, plan: OrderPlan, region: Region) -> OrderPlan:
    level = rng.choice((VerificationLevel.L0, VerificationLevel.L1))
    limit = region.limits_for(level).per_payment
    low, high = (_times(limit, share) for share in OVER_LIMIT_SHARES)
    over = _draw(rng, low, high, plan.price.currency)
    # Refused on its limits before the wallet is asked anything: nothing to top up.
    return replace(plan, price=over, level=level, paying=Paying.WALLET, card=None, wallet_top_up=None)


def _above_threshold(rng: random.Random, plan: OrderPlan, region: Region) -> OrderPlan:
    low, high = (_times(region.security_check_above, share) for share in PIN_SHARES)
    big = _draw(rng, low, high, plan.price.currency)
    return replace(plan, price=big, wallet_top_up=_top_up(big, region) if plan.wallet_top_up else None)


def _refused_with_money_in(_rng: random.Random, plan: OrderPlan, region: Region) -> OrderPlan:
    # Funded: a refusal that did not hold would show as money moving.
    return replace(plan, paying=Paying.WALLET, card=None, wallet_top_up=_top_up(plan.price, region))


NETWORK_FAULTS: Mapping[Branch, tuple[Behaviour, ...]] = {
    Branch.TRANSIENT: (Behaviour.TIMEOUT_ONCE, Behaviour.UNAVAILABLE_FIRST_REQUEST),
    Branch.LOST_ANSWER: (Behaviour.LOST_ANSWER,),
    Branch.RETRIES_EXHAUSTED: (Behaviour.ISSUER_UNAVAILABLE,),
}
"""The test cards' behaviours each funding-network branch pays with (one-shot ones fire once per token)."""

_SHAPES: Mapping[Branch, Callable[[random.Random, OrderPlan, Region], OrderPlan]] = {
    Branch.HAPPY: _at_a_quote,
    Branch.DECLINED: _card_first,
    Branch.SPLIT_PAYMENT: _card_first,
    Branch.PAY_AGAIN: _declined_then_again,
    Branch.TRANSIENT: _network_fault,
    Branch.LOST_ANSWER: _network_fault,
    Branch.RETRIES_EXHAUSTED: _network_fault,
    Branch.PARTIAL_REFUND: _refunded_in_escrow,
    Branch.FULL_REFUND: _refunded_in_escrow,
    Branch.DISPUTE_REFUND: _disputed,
    Branch.DISPUTE_SPLIT: _disputed,
    Branch.DISPUTE_RELEASE: _disputed,
    Branch.DISPUTE_SELLER_SILENT: _disputed,
    Branch.OVER_LIMIT: _over_limit,
    Branch.PIN_CONFIRMED: _above_threshold,
    Branch.LOCKED_ACCOUNT: _refused_with_money_in,
    Branch.BINDING_REVOKED: _refused_with_money_in,
}
"""Each branch's own choices on top of the common ones (AUTO_RELEASE, HOLD_REFUSED: none)."""


# ---------------------------------------------------------------------- helpers (pure)


def _top_up(price: Money, region: Region) -> Money:
    """Enough test money for the wallet to pay ``price`` whole, fee and spread included."""
    return _share(_estimate(price, region.currency), 100 * TOP_UP_HEADROOM) + _usd_in(region.currency, 5)


def _times(amount: Money, share: Decimal) -> Money:
    return _money(amount.decimal * share, amount.currency, ROUND_FLOOR)


def _usd_in(currency: str, dollars: int) -> Money:
    """About ``dollars`` US dollars in ``currency`` (at the mid rate, rounded up)."""
    return _estimate(Money(amount_minor=dollars * 100, currency=BASE_CURRENCY), currency)


def _estimate(price: Money, currency: str) -> Money:
    """``price`` in ``currency`` at the mid rate, rounded up (below what the buyer pays: no spread, no fee)."""
    rate = default_rates().mid_rate(price.currency, currency)
    return _money(price.decimal * rate, currency, ROUND_CEILING)


def _share(amount: Money, percent: int) -> Money:
    """``percent`` of ``amount``, rounded down, at least one minor unit."""
    return Money(amount_minor=max(1, amount.amount_minor * percent // 100), currency=amount.currency)


def _draw(rng: random.Random, low: Money, high: Money, currency: str) -> Money:
    """An amount in ``currency`` between ``low`` and ``high`` (both in the buyer's currency), at the mid rate."""
    rate = default_rates().mid_rate(currency, low.currency)
    lowest = _money(low.decimal / rate, currency, ROUND_CEILING).amount_minor
    highest = _money(high.decimal / rate, currency, ROUND_FLOOR).amount_minor
    return Money(amount_minor=rng.randint(max(lowest, 2), max(highest, lowest + 1, 3)), currency=currency)


def _money(major: Decimal, currency: str, rounding: str) -> Money:
    minor = (major.scaleb(minor_unit_exponent(currency))).to_integral_value(rounding=rounding)
    return Money(amount_minor=int(minor), currency=currency)


def _parts(rng: random.Random, price: Money, parts: int, *, whole: bool) -> tuple[Money, ...]:
    """``parts`` amounts of at least one minor unit: summing to ``price`` when ``whole``, else to less."""
    total = price.amount_minor if whole else rng.randint(parts, price.amount_minor - 1)
    parts = min(parts, total)
    cuts = sorted(rng.sample(range(1, total), parts - 1)) if parts > 1 else []
    bounds = [0, *cuts, total]
    return tuple(Money(amount_minor=b - a, currency=price.currency) for a, b in itertools.pairwise(bounds))


def _pick(rng: random.Random, behaviour: Behaviour) -> CardChoice:
    return rng.choice([_choice(c) for c in _test_cards() if c.behaviour is behaviour])


def _choice(card: ScriptedCard) -> CardChoice:
    return CardChoice(card.behaviour, card.brand, card.number[-4:])


@cache
def _test_cards() -> Sequence[ScriptedCard]:
    """The simulator's scripted cards that the app can add with a three-digit CVC (steps.add_card's)."""
    return tuple(c for c in load_scripted_cards().values() if CVC_LENGTHS[c.brand] == 3)
