"""The seeded order mix of a chaos run (G2, X6): every branch the product has, planned from the
seed, then driven against the running stack while it fails.

    plans = plan_orders(seed, 300)                       # pure: the same seed, the same list
    driven = [await drive(world, p, timeout=180) for p in plans]   # the runner runs ~50 at once
    world.clock.advance(CLOCK_MOVE_TO_SETTLE)            # only the runner moves the clock, once
    driven = [await settle(world, d, timeout=180) for d in driven]
    broken = [d for d in driven if d.outcome != d.expected]

- :mod:`~scripts.chaos.orders.plans`: the branches, their expected ends and the seeded choices;
- :mod:`~scripts.chaos.orders.world`: one order's view of the World (tagged ids, fixed
  idempotency keys, publishes that outlast a broker restart);
- :mod:`~scripts.chaos.orders.branches`: one script per branch, from the scenario steps;
- :mod:`~scripts.chaos.orders.driving`: :func:`drive`, :func:`settle` and the outcome's words.
"""

from scripts.chaos.orders.driving import Driven, describe, drive, settle
from scripts.chaos.orders.plans import (
    CLOCK_MOVE_TO_SETTLE,
    CLOCK_NEEDS,
    DEFAULT_WEIGHTS,
    EXPECTED,
    SCHEDULED_WAIT,
    Branch,
    CardChoice,
    OrderPlan,
    Paying,
    plan_orders,
)

__all__ = [
    "CLOCK_MOVE_TO_SETTLE",
    "CLOCK_NEEDS",
    "DEFAULT_WEIGHTS",
    "EXPECTED",
    "SCHEDULED_WAIT",
    "Branch",
    "CardChoice",
    "Driven",
    "OrderPlan",
    "Paying",
    "describe",
    "drive",
    "plan_orders",
    "settle",
]
