"""The chaos run's order mix (G2, X6) against the test stack: one order of every branch, the
clock moved once as the runner moves it, then settled; each must end as its branch says and the
books must balance (the pure plan is tests/unit/test_chaos_order_plans.py's)."""

import asyncio
import time

import pytest
from rich.console import Console

from contracts import FundWallet, Money, WalletFunded
from scripts.audit.checks import AuditLimits
from scripts.audit.reader import audit_stack
from scripts.chaos.orders import (
    CLOCK_MOVE_TO_SETTLE,
    Branch,
    Driven,
    drive,
    plan_orders,
    settle,
)
from scripts.chaos.orders.world import OrderWorld
from scripts.scenarios import ScenarioRunner, StackHandle
from scripts.scenarios.runner import AUDIT_ATTEMPTS
from scripts.stack import ServiceProcesses

pytestmark = [pytest.mark.e2e, pytest.mark.kafka, pytest.mark.slow]

STEP_TIMEOUT = 90.0
WAITING = {
    Branch.AUTO_RELEASE: "in escrow",
    Branch.DISPUTE_SELLER_SILENT: "disputed",
    Branch.DECLINED: "payment failed",  # with the decline card's reason
}


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
