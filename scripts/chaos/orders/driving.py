"""Drive one planned order against a running stack and say how it ended (G2).

:func:`drive` plays the plan's branch and returns a :class:`Driven`: what the branch should end
in and what it did, in one vocabulary (``completed``, ``refunded``, ``cancelled: limit_exceeded``,
``in escrow``, ``payment failed: do_not_honor``, ``disputed``), so the runner compares two
strings. A branch that waits on a timer returns where it waits; once the runner has moved the
clock by :data:`~scripts.chaos.orders.plans.CLOCK_MOVE_TO_SETTLE`, :func:`settle` waits for its end.

A step that fails (a wait that outlasts its timeout, a refusal, an unexpected status) ends the
drive there: the outcome is then the furthest status the order reached, and the failure is one
of the problems, which the outcome names too (so it differs from what was expected).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from contracts import OrderStatus, OrderStatusChanged
from scripts.chaos.orders.branches import FINAL, SCRIPTS, OrderRun, check_final
from scripts.chaos.orders.plans import OrderPlan
from scripts.chaos.orders.world import OrderWorld
from scripts.scenarios.steps import order_reaches, reason_code
from scripts.scenarios.world import World

WITH_REASON = frozenset({OrderStatus.CANCELLED, OrderStatus.PAYMENT_FAILED})
NO_ORDER = "no order"
"""The outcome of a drive that failed before its checkout was sent."""


@dataclass(frozen=True, slots=True)
class Driven:
    """How one planned order went."""

    plan: OrderPlan
    order_id: str | None
    """None when the drive failed before the order was checked out."""
    expected: str
    outcome: str
    """Where the order ended (or waits), in the words of ``expected``; with the problems after
    ``" -- "`` when a check or a step failed."""
    buyer_id: str | None = None
    seller_id: str | None = None
    ids: tuple[str, ...] = ()
    """Every id the order made (buyer, seller, order, cards, refunds, disputes): its timeline is about them."""
    problems: tuple[str, ...] = ()
    """What went wrong on the way: a failed check of the money, or the step that broke off the drive."""
    awaits_clock: bool = False
    """Left waiting on a timer: :func:`settle` it once the clock has moved."""
    seconds: float = 0.0
    """How long driving (and settling) it took."""
    reached_at: float | None = None
    """When the status it ended in (or waits in) reached the marketplace (time.time()); None when
    it never got one."""

    @property
    def ok(self) -> bool:
        return self.outcome == self.expected


def describe(status: OrderStatusChanged | None) -> str:
    """An order's status in the outcome's words: ``cancelled: limit_exceeded``, ``in escrow``."""
    if status is None:
        return "no status"
    words = status.status.value.replace("_", " ")
    code = reason_code(status.reason)
    return f"{words}: {code}" if status.status in WITH_REASON and code else words


async def drive(world: World, plan: OrderPlan, *, timeout: float) -> Driven:
    """Play ``plan`` against the stack ``world`` acts on, each step waiting up to ``timeout``
    seconds; returns once the order is final, or waits on a timer (``awaits_clock``). Never moves
    the clock; never raises for what the stack did (that is the outcome)."""
    view = OrderWorld.of(world, tag=plan.tag, seed=plan.seed, index=plan.index, timeout=timeout)
    run = OrderRun(view, plan)
    started = time.monotonic()
    try:
        reached: OrderStatusChanged | None = await SCRIPTS[plan.branch](run)
        if reached is not None and reached.status in FINAL:
            await check_final(run, reached)
    except Exception as broken:
        run.problems.append(_failure(broken))
        reached = _furthest(run)
    waits = reached is not None and reached.status not in FINAL and plan.waits_on_clock is not None
    return _driven(run, reached, awaits_clock=waits, seconds=time.monotonic() - started)


async def settle(world: World, driven: Driven, *, timeout: float) -> Driven:
    """For an order left waiting on a timer, once the clock has moved past it: wait for its end.
    Any other order comes back as it was."""
    if not driven.awaits_clock or driven.order_id is None:
        return driven
    plan = driven.plan
    view = OrderWorld.of(world, tag=plan.tag, seed=plan.seed, index=plan.index, timeout=timeout)
    run = OrderRun(view, plan, order_id=driven.order_id, seller_id=driven.seller_id, problems=list(driven.problems))
    started = time.monotonic()
    try:
        final = await order_reaches(view, driven.order_id, *FINAL)
        await check_final(run, final)
        reached: OrderStatusChanged | None = final
    except Exception as broken:
        run.problems.append(_failure(broken))
        reached = _furthest(run)
    settled = _driven(run, reached, awaits_clock=False, seconds=time.monotonic() - started)
    return replace(settled, ids=driven.ids, buyer_id=driven.buyer_id, seconds=driven.seconds + settled.seconds)


def _driven(run: OrderRun, reached: OrderStatusChanged | None, *, awaits_clock: bool, seconds: float) -> Driven:
    outcome = describe(reached) if run.order_id is not None else NO_ORDER
    if run.problems:
        outcome = f"{outcome} -- {'; '.join(run.problems)}"
    tag = run.plan.tag
    at = run.world.arrived.get((run.order_id, reached.status.value)) if reached and run.order_id else None
    return Driven(
        plan=run.plan,
        order_id=run.order_id,
        expected=run.plan.expected,
        outcome=outcome,
        buyer_id=run.buyer.account_id if run.buyer else None,
        seller_id=run.seller_id,
        ids=tuple(i for i in run.world.ids if f"-{tag}-" in i),
        problems=tuple(run.problems),
        awaits_clock=awaits_clock,
        seconds=seconds,
        reached_at=at,
    )


def _furthest(run: OrderRun) -> OrderStatusChanged | None:
    """The order's first final status seen, or else its last one (a copy of an old status may arrive late)."""
    if run.order_id is None:
        return None
    statuses = run.world.seen(OrderStatusChanged, order_id=run.order_id)
    return next((s for s in statuses if s.status in FINAL), statuses[-1] if statuses else None)


def _failure(error: Exception) -> str:
    text = str(error) or "no message"
    return text if isinstance(error, AssertionError) else f"{type(error).__name__}: {text}"
