"""Scenarios (SPEC X7): the product's acceptance suite and the demo a person browses.

A scenario is a short script of marketplace, buyer, seller, operator and funding-network
actions against a running stack. It prints what happens and the timeline of every message
about its accounts and orders, and fails (the CLI exits non-zero) when the outcome differs
from what it expects. Write one as a coroutine function taking a :class:`World`::

    @scenario("happy-path", "A bound buyer pays from the wallet ...", features=("A1", "P1"))
    async def happy_path(world: World) -> None:
        \"\"\"What the scenario shows, for people browsing the catalogue.\"\"\"
        buyer = await onboard_buyer(world)           # scripts.scenarios.steps
        order_id = await checkout(world, buyer, world.fresh("seller"), usd(4250))
        final = await order_reaches(world, order_id, OrderStatus.IN_ESCROW, OrderStatus.CANCELLED)
        expect(final.status is OrderStatus.IN_ESCROW, "the order paid into escrow", got=final.status)

Rules: every id comes from ``world.fresh`` / ``world.person`` (so a scenario runs any number of
times against one stack, in any order); wait for messages with ``world.event``/``reply``/
``wait_for`` (never sleep); move time with ``world.clock.advance`` (X8).

Run them with ``tradeguard scenario NAME | --all | --list`` or ``make scenarios``.
"""

from scripts.scenarios import catalogue  # its modules register the scenarios in CATALOGUE
from scripts.scenarios.handle import StackClock, StackHandle, StackNotFoundError
from scripts.scenarios.outcome import ScenarioFailed, expect
from scripts.scenarios.registry import CATALOGUE, Catalogue, Scenario, scenario
from scripts.scenarios.runner import ScenarioResult, ScenarioRunner, Verdict, exit_code, print_results
from scripts.scenarios.world import World

__all__ = [
    "CATALOGUE",
    "Catalogue",
    "Scenario",
    "ScenarioFailed",
    "ScenarioResult",
    "ScenarioRunner",
    "StackClock",
    "StackHandle",
    "StackNotFoundError",
    "Verdict",
    "World",
    "catalogue",
    "exit_code",
    "expect",
    "print_results",
    "scenario",
]
