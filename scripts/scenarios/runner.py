"""Run scenarios against a stack: each prints its story and timeline, then a verdict; a table sums up.

Every scenario ends with the books audit (G1, scripts/audit) of the whole stack: a scenario
whose outcome was right but left the books broken fails, naming each break; after a run of
several, the last audit's report is printed in full beneath the table of verdicts.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import Self, TypeVar

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from contracts import SealingKey
from scripts.audit.checks import AuditLimits, AuditReport
from scripts.audit.reader import audit_stack
from scripts.audit.report import print_report
from scripts.marketplace import EventWatcher, Marketplace
from scripts.onboarding import CommandRefusedError, Onboarding, Phone
from scripts.scenarios.handle import StackClock, StackHandle
from scripts.scenarios.outcome import ScenarioFailed
from scripts.scenarios.registry import Scenario
from scripts.scenarios.timeline import print_timeline
from scripts.scenarios.world import World
from scripts.stack import client_keyring
from services.funding.client import VaultClient, VaultError
from shared.clock import FileClock

T = TypeVar("T")
SCENARIO_TIMEOUT = 120.0
"""No scenario may take longer (each wait has its own, shorter, limit)."""
AUDIT_ATTEMPTS = 3
"""A scenario ends on the answer it awaited, while a last message may still be on its way (a
seller's payout, a notice): the audit looks again, a second apart, before a break counts."""


class Verdict(StrEnum):
    PASSED = "passed"
    FAILED = "failed"  # the system did not do what the scenario expects
    ERROR = "error"  # the scenario itself broke (a bug in it, or something it did not foresee)


@dataclass(frozen=True, slots=True)
class ScenarioResult:
    scenario: Scenario
    verdict: Verdict
    message: str
    seconds: float
    audit: AuditReport | None = None
    """The books audit that followed the scenario (None when the runner audits nothing)."""

    @property
    def passed(self) -> bool:
        return self.verdict is Verdict.PASSED


class ScenarioRunner:
    """Opens the marketplace's producer, an event watcher and the vault client once, and runs
    scenarios one after the other (they share the stack's clock, so never at once)."""

    def __init__(
        self,
        stack: StackHandle,
        console: Console,
        *,
        timeout: float = 30.0,
        audit: bool = True,
        limits: AuditLimits | None = None,
    ) -> None:
        self.stack = stack
        self.console = console
        self.timeout = timeout
        self.audit = audit
        self.limits = limits or AuditLimits()
        self.last_audit: AuditReport | None = None
        self._exits = AsyncExitStack()
        self._phone = Phone(stack.sms_outbox)
        self._key: SealingKey | None = None
        self._market: Marketplace | None = None
        self._watcher: EventWatcher | None = None
        self._vault: VaultClient | None = None

    async def __aenter__(self) -> Self:
        self._key = self.stack.sealing_key()
        vault_url = self.stack.vault_url
        try:
            self._market = await self._enter(
                Marketplace(self.stack.bootstrap, keyring=client_keyring(self.stack.state_dir))
            )
            self._watcher = await self._enter(EventWatcher(self.stack.bootstrap))
            self._vault = await self._enter(VaultClient(vault_url))
        except BaseException:
            await self._exits.aclose()
            raise
        return self

    async def _enter(self, resource: AbstractAsyncContextManager[T]) -> T:
        """Enter ``resource``, whose exit runs on close even when entering failed half-way (an
        aiokafka client that could not reach the broker must still be stopped)."""
        self._exits.push_async_exit(resource.__aexit__)
        return await resource.__aenter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self._exits.aclose()

    @property
    def watcher(self) -> EventWatcher:
        """Every message the run has seen (open the runner first)."""
        if self._watcher is None:
            raise RuntimeError("open the runner first: `async with ScenarioRunner(...) as runner`")
        return self._watcher

    def world(self) -> World:
        """A fresh world for one scenario, over this runner's connections."""
        if self._market is None or self._watcher is None or self._vault is None or self._key is None:
            raise RuntimeError("open the runner first: `async with ScenarioRunner(...) as runner`")
        onboarding = Onboarding(
            self._market,
            self._watcher,
            self._phone,
            self._key,
            timeout=self.timeout,
            clock=FileClock(self.stack.clock_file),
            payment_url=self.stack.endpoint("payment"),
        )
        return World(
            market=self._market,
            watcher=self._watcher,
            onboarding=onboarding,
            vault=self._vault,
            phone=self._phone,
            key=self._key,
            clock=StackClock(self.stack.clock_file),
            console=self.console,
            timeout=self.timeout,
        )

    async def run(self, scenario: Scenario) -> ScenarioResult:
        """Play one scenario, then audit the books; print its timeline and verdict whatever the outcome."""
        self.console.rule(f"[bold]{scenario.name}[/]: {escape(scenario.summary)}")
        world = self.world()
        started = time.monotonic()
        verdict, message = await self._play(scenario, world)
        seconds = time.monotonic() - started
        print_timeline(self.console, world.timeline(), f"{scenario.name}: every message about {', '.join(world.ids)}")
        books = await self._audit_books() if self.audit else None
        if books is not None and not books.ok:
            verdict = Verdict.FAILED if verdict is Verdict.PASSED else verdict
            message = "; ".join(part for part in (message, f"books audit: {books.summary()}") if part)
        colour = "green" if verdict is Verdict.PASSED else "red"
        self.console.print(f"[bold {colour}]{scenario.name} {verdict.value.upper()}[/] {escape(message)}")
        return ScenarioResult(scenario, verdict, message, seconds, books)

    async def run_all(self, scenarios: Iterable[Scenario]) -> list[ScenarioResult]:
        """Every scenario in turn, each audited; the books after the last one are the run's, printed in full."""
        results = [await self.run(s) for s in scenarios]
        if self.last_audit is not None and len(results) > 1:
            self.console.rule("[bold]books after the run[/]")
            print_report(self.console, self.last_audit)
        return results

    async def _audit_books(self) -> AuditReport:
        """G1 over the whole stack (every scenario's orders so far, not only this one's)."""
        report = await audit_stack(self.stack.state_dir, self.limits, attempts=AUDIT_ATTEMPTS)
        self.last_audit = report
        if report.ok:
            figures = ", ".join(f"{n} {what}" for what, n in report.figures.items())
            self.console.print(f"  [green]books audit: the books balance[/] ({escape(figures)})")
        else:
            print_report(self.console, report)
        return report

    async def _play(self, scenario: Scenario, world: World) -> tuple[Verdict, str]:
        try:
            async with asyncio.timeout(SCENARIO_TIMEOUT):
                await scenario.play(world)
        except ScenarioFailed as failed:
            return Verdict.FAILED, str(failed)
        except CommandRefusedError as refused:
            return Verdict.FAILED, f"a step was refused: {refused}"
        except TimeoutError as timeout:
            return Verdict.FAILED, f"timed out: {str(timeout) or 'an awaited answer never came'}"
        except VaultError as vault:
            return Verdict.FAILED, f"the vault did not tokenise: {vault}"
        except Exception as error:
            self.console.print_exception(show_locals=False)
            return Verdict.ERROR, f"the scenario broke: {error!r}"
        return Verdict.PASSED, ""


def print_results(console: Console, results: list[ScenarioResult]) -> None:
    """The pass/fail table of a run."""
    table = Table(title="Scenarios", title_justify="left")
    for column in ("scenario", "features", "result", "seconds", "what went wrong"):
        table.add_column(column, overflow="fold")
    for r in results:
        colour = "green" if r.passed else "red"
        table.add_row(
            r.scenario.name,
            " ".join(r.scenario.features),
            f"[{colour}]{r.verdict.value}[/]",
            f"{r.seconds:5.1f}",
            escape(r.message),
        )
    console.print(table)
    passed = sum(r.passed for r in results)
    colour = "green" if passed == len(results) else "red"
    console.print(f"[bold {colour}]{passed} of {len(results)} scenarios passed[/]")


def exit_code(results: list[ScenarioResult]) -> int:
    """0 only when at least one scenario ran and every one passed."""
    return 0 if results and all(r.passed for r in results) else 1
