"""The chaos run's order mix (G2, X6): the seeded plan of orders, and one order of every branch
driven against the test stack, the clock moved once as the runner moves it, then settled; each
must end as its branch says and the books must balance."""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal
from pathlib import Path

import pytest
from rich.console import Console

from contracts import FundWallet, Money, VerificationLevel, WalletFunded
from contracts.money import minor_unit_exponent
from scripts.audit.checks import AuditLimits
from scripts.audit.reader import audit_stack
from scripts.chaos.orders import (
    CLOCK_MOVE_TO_SETTLE,
    CLOCK_NEEDS,
    DEFAULT_WEIGHTS,
    Branch,
    CardChoice,
    Driven,
    OrderPlan,
    Paying,
    drive,
    plan_orders,
    settle,
)
from scripts.chaos.orders.plans import ORDINARY_SHARE, OVER_LIMIT_SHARES, PIN_SHARES
from scripts.chaos.orders.world import OrderWorld, TailingPhone
from scripts.onboarding import Phone
from scripts.scenarios import ScenarioRunner, StackHandle
from scripts.scenarios.runner import AUDIT_ATTEMPTS
from scripts.stack import ServiceProcesses
from services.account.domain.regions import default_regions
from services.funding.cards import Behaviour
from services.funding.vault import load_scripted_cards
from services.payment.domain.pricing import default_rates
from services.saga.domain.policy import default_policy

pytestmark = [pytest.mark.e2e, pytest.mark.kafka, pytest.mark.slow]

SEEDS = range(25)
STEP_TIMEOUT = 90.0
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


def print_timings(driven: list[Driven], settled: list[Driven]) -> None:
    for before, after in sorted(zip(driven, settled, strict=True), key=lambda pair: -pair[1].seconds):
        print(
            f"{after.plan.branch:>22}  {after.seconds:6.1f} s  {after.plan.price}  {after.plan.country}  "
            f"{before.outcome} -> {after.outcome}"
        )


async def test_x6_g2_one_order_of_every_branch_ends_as_its_branch_says(stack: ServiceProcesses) -> None:
    """Every branch at once (as the runner drives them, concurrently), the clock moved once past
    every timer a branch waits on, then settled: each order ends as expected, the ones that
    waited had stopped where their branch waits, and the books audit finds nothing broken."""
    handle = StackHandle.from_services(stack)
    plans = plan_orders(20261201, len(Branch))
    assert {p.branch for p in plans} == set(Branch)
    started = time.monotonic()
    async with ScenarioRunner(handle, Console(width=160), timeout=STEP_TIMEOUT, audit=False) as runner:
        driven = list(await asyncio.gather(*(drive(runner.world(), p, timeout=STEP_TIMEOUT) for p in plans)))
        driving = time.monotonic() - started

        waiting = {d.plan.branch: d.outcome for d in driven if d.awaits_clock}
        runner.world().clock.advance(CLOCK_MOVE_TO_SETTLE)
        settled = list(await asyncio.gather(*(settle(runner.world(), d, timeout=STEP_TIMEOUT) for d in driven)))
    print_timings(driven, settled)
    print(f"driven in {driving:.1f} s, settled in {time.monotonic() - started - driving:.1f} s")

    assert [(d.plan.branch, d.order_id, d.outcome) for d in settled if d.outcome != d.expected] == []
    assert {b: w.partition(":")[0] for b, w in waiting.items()} == WAITING
    assert all(d.order_id and d.order_id in d.ids and d.plan.tag in d.order_id for d in settled)
    books = await audit_stack(stack.state_dir, AuditLimits(), attempts=AUDIT_ATTEMPTS)
    assert books.ok, books.summary()


async def test_g2_an_orders_view_fixes_its_ids_keys_and_phone_numbers(stack: ServiceProcesses) -> None:
    """Ids carry the plan's tag; the n-th command of a kind about a subject has the n-th key (a
    publish retried is the same command); each plan index has phone numbers of its own."""
    plan = plan_orders(11, 3)[2]
    async with ScenarioRunner(StackHandle.from_services(stack), Console(width=160), audit=False) as runner:
        view = OrderWorld.of(runner.world(), tag=plan.tag, seed=plan.seed, index=plan.index, timeout=30)
        account = view.fresh("buyer")
        sent = [
            await view.send(
                FundWallet(account_id=account, amount=Money(amount_minor=100, currency="USD")), about=account
            )
            for _ in range(2)
        ]
        funded = [await view.reply(s, WalletFunded) for s in sent]
        others = [OrderWorld.of(runner.world(), tag="t", seed=11, index=i, timeout=1) for i in (2, 3)]

    assert account.startswith(f"buyer-{plan.tag}-")
    assert [s.idempotency_key for s in sent] == [f"FundWallet:{account}:1", f"FundWallet:{account}:2"]
    assert [f.balance.amount_minor for f in funded] == [100, 200]
    assert others[0].phone_number() == view.phone_number() != others[1].phone_number()


async def test_g2_a_drive_that_cannot_finish_says_where_it_stopped(stack: ServiceProcesses) -> None:
    """A step that outlasts its timeout ends the drive without raising: no order was made, and
    the outcome names the failure (so it differs from what was expected)."""
    plan = next(p for p in plan_orders(12, len(Branch)) if p.branch is Branch.HAPPY)
    async with ScenarioRunner(StackHandle.from_services(stack), Console(width=160), audit=False) as runner:
        driven = await drive(runner.world(), plan, timeout=0.001)

    assert driven.order_id is None
    assert driven.outcome.startswith("no order -- ")
    assert not driven.ok
    assert driven.expected == "completed"
    assert len(driven.problems) == 1
