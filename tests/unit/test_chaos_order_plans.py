"""The chaos run's order mix (G2, X6), pure: the seeded plan of orders, its amounts, cards and
clock moves (the orders driven against a stack are tests/e2e/test_chaos_orders.py's)."""

import json
from decimal import Decimal
from pathlib import Path

import pytest

from contracts import Money, VerificationLevel
from contracts.money import minor_unit_exponent
from scripts.chaos.orders import (
    CLOCK_MOVE_TO_SETTLE,
    CLOCK_NEEDS,
    DEFAULT_WEIGHTS,
    Branch,
    CardChoice,
    OrderPlan,
    Paying,
    plan_orders,
)
from scripts.chaos.orders.plans import ORDINARY_SHARE, OVER_LIMIT_SHARES, PIN_SHARES
from scripts.chaos.orders.world import TailingPhone
from scripts.onboarding import Phone
from services.account.domain.regions import default_regions
from services.funding.cards import Behaviour
from services.funding.vault import load_scripted_cards
from services.payment.domain.pricing import default_rates
from services.saga.domain.policy import default_policy

SEEDS = range(25)
WAITING = {
    Branch.AUTO_RELEASE: "in escrow",
    Branch.DISPUTE_SELLER_SILENT: "disputed",
    Branch.DECLINED: "payment failed",  # with the decline card's reason
}


def amounts(plan: OrderPlan) -> list[Money]:
    parts = [plan.price, *plan.refunds]
    return parts + [m for m in (plan.wallet_top_up, plan.split_refund) if m is not None]


def in_buyer_currency(plan: OrderPlan) -> Decimal:
    """The price at the mid rate in the buyer's currency (below what the buyer pays)."""
    currency = default_regions().get(plan.country).currency
    return plan.price.decimal * default_rates().mid_rate(plan.price.currency, currency)


# ---------------------------------------------------------------------- the plan (pure)


def test_g2_the_same_seed_plans_the_same_orders() -> None:
    assert plan_orders(7, 300) == plan_orders(7, 300)
    assert plan_orders(7, 100) == plan_orders(7, 300)[:100]


def test_g2_another_seed_plans_other_orders() -> None:
    assert plan_orders(7, 100) != plan_orders(8, 100)
    assert [p.branch for p in plan_orders(7, 100)] != [p.branch for p in plan_orders(8, 100)]


@pytest.mark.parametrize("seed", SEEDS)
def test_g2_sixty_orders_take_every_branch_with_the_default_weights(seed: int) -> None:
    plans = plan_orders(seed, 60)

    assert {p.branch for p in plans} == set(Branch)
    assert [p.index for p in plans] == list(range(60))


def test_g2_the_first_orders_take_each_branch_once() -> None:
    assert sorted(p.branch for p in plan_orders(3, len(Branch))) == sorted(Branch)


def test_g2_weights_choose_the_branches() -> None:
    assert {p.branch for p in plan_orders(5, 40, {Branch.HAPPY: 1, Branch.DECLINED: 0})} == {Branch.HAPPY}
    assert {p.branch for p in plan_orders(5, 40, {Branch.DISPUTE_SPLIT: 3, Branch.AUTO_RELEASE: 1})} == {
        Branch.DISPUTE_SPLIT,
        Branch.AUTO_RELEASE,
    }
    assert set(DEFAULT_WEIGHTS) == set(Branch)
    with pytest.raises(ValueError, match="positive weight"):
        plan_orders(5, 10, {Branch.HAPPY: 0})
    with pytest.raises(ValueError, match="negative"):
        plan_orders(5, 10, {Branch.HAPPY: -1, Branch.DECLINED: 2})


def test_g2_amounts_are_integer_minor_units_in_several_currencies() -> None:
    plans = [p for seed in SEEDS for p in plan_orders(seed, 120)]

    for plan in plans:
        for money in amounts(plan):
            assert isinstance(money.amount_minor, int)
            assert money.amount_minor > 0, plan
        assert all(r.currency == plan.price.currency for r in plan.refunds)
        if plan.wallet_top_up is not None:
            assert plan.wallet_top_up.currency == default_regions().get(plan.country).currency
    assert len({p.price.currency for p in plans}) >= 5
    assert {0, 2, 3} <= {minor_unit_exponent(p.price.currency) for p in plans}  # JPY, USD, KWD


def test_g2_refunds_and_splits_stay_within_the_price() -> None:
    plans = [p for seed in SEEDS for p in plan_orders(seed, 120)]

    for p in plans:
        if p.branch is Branch.FULL_REFUND:
            assert sum(r.amount_minor for r in p.refunds) == p.price.amount_minor
            assert 1 <= len(p.refunds) <= 3
        if p.branch is Branch.PARTIAL_REFUND:
            assert len(p.refunds) == 1
            assert p.refunds[0].amount_minor < p.price.amount_minor
        if p.branch is Branch.DISPUTE_SPLIT:
            assert p.split_refund is not None
            assert 0 < p.split_refund.amount_minor < p.price.amount_minor


def test_g2_prices_follow_the_regions_thresholds_and_limits() -> None:
    """Ordinary prices need no PIN anywhere; PIN-confirmed ones are above the threshold and within
    L1's per-payment limit; over-limit ones exceed the level's per-payment limit."""
    spread_and_fee = Decimal("1.05")
    for plan in [p for seed in SEEDS for p in plan_orders(seed, 120)]:
        region = default_regions().get(plan.country)
        paid = in_buyer_currency(plan)
        threshold = region.security_check_above.decimal
        if plan.branch is Branch.OVER_LIMIT:
            assert paid >= region.limits_for(plan.level).per_payment.decimal * OVER_LIMIT_SHARES[0] * Decimal("0.99")
        elif plan.branch is Branch.PIN_CONFIRMED:
            assert paid >= threshold * PIN_SHARES[0] * Decimal("0.99")
            assert paid * spread_and_fee < region.limits_for(VerificationLevel.L1).per_payment.decimal
        else:
            assert paid <= threshold * ORDINARY_SHARE
            assert plan.level is VerificationLevel.L1


def test_g2_each_branch_pays_the_way_it_needs() -> None:
    plans = [p for seed in SEEDS for p in plan_orders(seed, 120)]
    by = {b: [p for p in plans if p.branch is b] for b in Branch}

    faults = {p.card.behaviour for p in by[Branch.TRANSIENT] if p.card}
    assert faults == {Behaviour.TIMEOUT_ONCE, Behaviour.UNAVAILABLE_FIRST_REQUEST}
    assert all(p.card and p.card.behaviour is Behaviour.LOST_ANSWER for p in by[Branch.LOST_ANSWER])
    assert all(p.card and p.card.behaviour.startswith("decline") for p in by[Branch.DECLINED] + by[Branch.PAY_AGAIN])
    assert all(p.wallet_top_up is not None and p.paying is Paying.CARD for p in by[Branch.SPLIT_PAYMENT])
    assert all(p.second_card is not None or p.wallet_top_up is not None for p in by[Branch.PAY_AGAIN])
    assert all(p.paying is Paying.WALLET and p.wallet_top_up for p in by[Branch.LOCKED_ACCOUNT])
    assert {p.level for p in by[Branch.OVER_LIMIT]} == {VerificationLevel.L0, VerificationLevel.L1}
    assert {p.paying for p in by[Branch.HAPPY]} == set(Paying)
    assert any(p.quoted for p in by[Branch.HAPPY])
    for p in plans:
        assert p.paying is Paying.WALLET or p.card is not None
        assert p.paying is Paying.CARD or p.wallet_top_up is not None or p.branch is Branch.OVER_LIMIT


def test_g2_plans_name_test_cards_without_their_numbers() -> None:
    cards = load_scripted_cards()
    choices = {CardChoice(c.behaviour, c.brand, c.number[-4:]) for c in cards.values()}
    assert len(choices) == len(cards)  # each choice names one card
    shown = " ".join(repr(p) for seed in SEEDS for p in plan_orders(seed, 120))
    assert [n for n in cards if n in shown] == []


def test_g2_one_move_of_the_clock_fires_every_timer_a_branch_waits_on() -> None:
    policy = default_policy()
    assert set(CLOCK_NEEDS) == set(WAITING)
    assert CLOCK_NEEDS[Branch.AUTO_RELEASE] > policy.protection.window(None)
    assert CLOCK_NEEDS[Branch.DISPUTE_SELLER_SILENT] > policy.dispute.seller_response
    assert CLOCK_NEEDS[Branch.DECLINED] > policy.payment.window
    assert all(need <= CLOCK_MOVE_TO_SETTLE for need in CLOCK_NEEDS.values())


def test_g2_the_buyers_phone_reads_only_what_was_appended(tmp_path: Path) -> None:
    outbox = tmp_path / "sms.jsonl"
    outbox.write_text("".join(json.dumps({"to": f"+4474{n:08d}", "text": f"code {n}"}) + "\n" for n in range(50)))
    phone = TailingPhone(outbox)

    assert phone.texts_to("+447400000007") == Phone(outbox).texts_to("+447400000007") == ["code 7"]
    with outbox.open("a") as sms:
        sms.write('{"to": "+447400000007", "text": "co')  # the simulator is half-way through a line
    assert phone.texts_to("+447400000007") == ["code 7"]
    with outbox.open("a") as sms:
        sms.write('de 7b"}\n')
    assert phone.texts_to("+447400000007") == ["code 7", "code 7b"]
    assert phone.texts_to("+447400000099") == []


# ---------------------------------------------------------------------- every branch, on the stack
