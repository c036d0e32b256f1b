"""One chaos run (G2, X6): its own broker and the services as processes, a seeded order mix
driven through every branch while the seeded faults happen, then the checks and the report.

The run, in order:

1. a fresh state folder and broker (own data folder and ports, never a `make run` stack's);
2. the fault window (``minutes``): orders start evenly spread over it, at most ``concurrency``
   at once, while :func:`scripts.chaos.faults.run_schedule` kills services, restarts the broker
   and sends poison, the copier duplicates and delays records, and the funding simulator
   fails first attempts at the schedule's rates;
3. the faults stop: copies cease, every service is running again; every order must reach its
   end (bounded wait), each within ``final_within`` seconds of the faults stopping;
4. the clock moves past every timer the branches wait on (the protection window, a seller's
   deadline) and the orders that waited on it settle;
5. the checks (:mod:`scripts.chaos.checks`) and the books audit; the report names each
   violation, the first broken order's timeline and the command that replays the run.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import time
from collections import Counter
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from rich.console import Console

from contracts import ALL_TOPICS
from contracts.catalogue import consumers_of
from scripts.audit.checks import AuditLimits, AuditReport
from scripts.audit.reader import Endpoints, audit_stack, read_books
from scripts.chaos import checks
from scripts.chaos.faults import (
    BrokerControl,
    FaultFigures,
    Poisoner,
    PoisonSent,
    RecordCopier,
    Supervisor,
    run_schedule,
)
from scripts.chaos.orders import CLOCK_MOVE_TO_SETTLE, SCHEDULED_WAIT, Driven, OrderPlan, drive, plan_orders, settle
from scripts.chaos.plan import Rates, Schedule, schedule
from scripts.cli.kafka_io import read_dead_letters
from scripts.marketplace import Seen
from scripts.scenarios.handle import StackClock, StackHandle
from scripts.scenarios.runner import ScenarioRunner
from scripts.secrets_scan import all_records, findings, stack_files, stack_secrets
from scripts.stack import (
    FAST_PASSWORD_HASHING,
    ROOT,
    SERVICES,
    LocalKafka,
    ServiceProcesses,
    client_keyring,
    sqlite_urls,
)
from shared.broker import ensure_topics
from shared.broker_security import ADMIN, CREDENTIALS_DIR_VARIABLE, client_options
from shared.clock import FileClock
from shared.retention import PRUNER_OFF

T = TypeVar("T")
DEFAULT_CONCURRENCY = 200


@dataclass(frozen=True, slots=True)
class ChaosOptions:
    seed: int = 1
    orders: int = 300
    minutes: float = 1.0
    concurrency: int = DEFAULT_CONCURRENCY
    """Orders under way at once, at most."""
    step_timeout: float = 180.0
    """How long an order waits for any one step (services die and come back meanwhile)."""
    final_within: float = 30.0
    """Every order final this many seconds after the faults stopped (the issue's bound)."""
    settle_timeout: float = 300.0
    """The bounded wait for every order after the faults stopped."""
    broker_restart: bool = True
    rates: Rates = field(default_factory=Rates)
    state_dir: Path = ROOT / ".cache" / "chaos" / "state"
    kafka_data_dir: Path = ROOT / ".cache" / "chaos" / "kafka"
    kafka_port: int = 19492

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    def replay_command(self) -> str:
        parts = [f"tradeguard chaos --seed {self.seed} --orders {self.orders} --minutes {self.minutes:g}"]
        if self.concurrency != DEFAULT_CONCURRENCY:
            parts.append(f"--concurrency {self.concurrency}")
        if not self.broker_restart:
            parts.append("--no-broker-restart")
        return " ".join(parts)


@dataclass
class ChaosReport:
    options: ChaosOptions
    schedule: Schedule
    figures: FaultFigures
    driven: dict[int, Driven] = field(default_factory=dict)
    """What each order's script saw, by plan index."""
    failed_to_drive: dict[int, str] = field(default_factory=dict)
    """Orders whose script broke (a step timed out, was refused): plan index -> what happened."""
    after_faults: dict[str, float] = field(default_factory=dict)
    """Seconds after the faults stopped at which each order that was under way then ended."""
    begun_after_faults: int = 0
    """Orders that waited for a slot until after the faults stopped (too few slots for the rate)."""
    violations: list[checks.Violation] = field(default_factory=list)
    audit: AuditReport | None = None
    poison: list[PoisonSent] = field(default_factory=list)
    dead_letters: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    injector_errors: list[str] = field(default_factory=list)
    """Fault injectors that stopped on an error before the window ended."""
    first_timeline: list[Seen] = field(default_factory=list)
    """Every message about the first order an invariant broke on."""

    @property
    def ok(self) -> bool:
        return not self.violations

    @property
    def longest_to_final(self) -> float:
        return max(self.after_faults.values(), default=0.0)

    def outcomes(self) -> Counter[str]:
        return Counter(d.outcome for d in self.driven.values())

    def branches(self) -> Counter[str]:
        return Counter(str(d.plan.branch) for d in self.driven.values())

    def first_broken_order(self) -> str | None:
        return next((v.order_id for v in self.violations if v.order_id), None)

    def as_json(self) -> dict[str, object]:
        return {
            "seed": self.options.seed,
            "orders": self.options.orders,
            "minutes": self.options.minutes,
            "replay": self.options.replay_command(),
            "ok": self.ok,
            "violations": [str(v) for v in self.violations],
            "faults": dict(self.figures.injected),
            "unexpected_exits": dict(self.figures.unexpected_exits),
            "copies_failed": self.figures.copies_failed,
            "branches": dict(self.branches()),
            "outcomes": dict(self.outcomes()),
            "failed_to_drive": len(self.failed_to_drive),
            "longest_to_final_seconds": round(self.longest_to_final, 2),
            "begun_after_faults": self.begun_after_faults,
            "dead_letters": self.dead_letters,
            "poison_sent": len(self.poison),
            "audit": self.audit.summary() if self.audit else None,
            "seconds": {k: round(v, 1) for k, v in self.seconds.items()},
        }


class ChaosRun:
    """The stack a run starts and the faults it injects; :meth:`run` does the whole run."""

    def __init__(self, options: ChaosOptions, console: Console) -> None:
        self.options, self.console = options, console
        self.schedule = schedule(
            options.seed,
            options.minutes * 60,
            SERVICES,
            tuple(t.name for t in ALL_TOPICS if consumers_of(t)),
            rates=options.rates,
            broker_restart=options.broker_restart,
        )
        self.report = ChaosReport(options, self.schedule, FaultFigures())
        self.kafka = LocalKafka(options.kafka_data_dir, options.kafka_port, options.kafka_port + 1)
        self.broker = BrokerControl(self.kafka, self.report.figures)
        self.services = ServiceProcesses(
            options.bootstrap,
            sqlite_urls(options.state_dir),
            options.state_dir / "logs",
            extra_env={
                **FAST_PASSWORD_HASHING,
                **PRUNER_OFF,  # the settle moves the clock by days; the copies must stay duplicates
                "FUNDING_SEED": str(options.seed),
                "FUNDING_TRANSIENT_RATE": str(options.rates.funding_transient),
                "FUNDING_LOST_ANSWER_RATE": str(options.rates.funding_lost_answer),
            },
        )
        self.supervisor = Supervisor(self.services, self.report.figures)

    async def run(self) -> ChaosReport:
        # The run's own clients reconnect through the broker's restart; their complaints meanwhile
        # would bury the run's output (the services' logs keep theirs).
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
        started = time.monotonic()
        # This run's broker's credentials, for its clients and the services it starts; whatever
        # the process used before (a test session's broker) is given back after.
        before = os.environ.get(CREDENTIALS_DIR_VARIABLE)
        os.environ[CREDENTIALS_DIR_VARIABLE] = str(self.kafka.credentials_dir)
        try:
            await self._timed("start", self._start())
            handle = StackHandle.from_services(self.services)
            async with ScenarioRunner(handle, Console(quiet=True), timeout=self.options.step_timeout, audit=False) as r:
                await self._drive(r)
                await self._timed("checks", self._check(r))
        finally:
            self.services.stop()
            self.broker.stop_now()
            if before is None:
                os.environ.pop(CREDENTIALS_DIR_VARIABLE, None)
            else:
                os.environ[CREDENTIALS_DIR_VARIABLE] = before
        self.report.seconds["total"] = time.monotonic() - started
        return self.report

    async def _timed(self, what: str, step: Awaitable[T]) -> T:
        started = time.monotonic()
        self.console.print(f"[bold]{what}[/]...")
        try:
            return await step
        finally:
            self.report.seconds[what] = time.monotonic() - started

    async def _start(self) -> None:
        shutil.rmtree(self.options.state_dir, ignore_errors=True)
        self.options.state_dir.mkdir(parents=True)
        await self.broker.command("reset")
        await self.broker.command("start")
        await ensure_topics(self.options.bootstrap, ALL_TOPICS)
        self.services.start()
        await self.services.wait_ready(120)

    # ------------------------------------------------------------------ the fault window

    async def _drive(self, runner: ScenarioRunner) -> None:
        plans = plan_orders(self.options.seed, self.options.orders)
        copier = RecordCopier(self.options.bootstrap, self.schedule, self.report.figures)
        poisoner = Poisoner(self.options.bootstrap, client_keyring(self.options.state_dir), self.report.figures)
        await copier.start()
        await poisoner.start()
        window = self.options.minutes * 60
        opened = time.monotonic()
        background = [
            asyncio.create_task(run_schedule(self.schedule, opened, self.supervisor, self.broker, poisoner)),
            asyncio.create_task(self.supervisor.watch()),
            asyncio.create_task(copier.copy()),
        ]
        self.console.print(
            f"fault window: {window:.0f} s, {len(plans)} orders, "
            f"{len(self.schedule.faults)} faults scheduled (replay: {self.options.replay_command()})"
        )
        slots = asyncio.Semaphore(self.options.concurrency)
        begun: dict[int, float] = {}
        ended: dict[int, float] = {}
        orders = {
            asyncio.create_task(self._one(runner, plan, opened + window * i / len(plans), slots, (begun, ended))): plan
            for i, plan in enumerate(plans)
        }
        try:
            await asyncio.sleep(max(0.0, opened + window - time.monotonic()))
            await background[0]  # the last fault carried out (a kill's restart included)
            self.report.seconds["fault window"] = time.monotonic() - opened
            stopped = time.time()  # the orders' times are arrival times on the watcher's clock
            self._injectors_alive(background[1:])
            for task in background[2:]:
                task.cancel()
            await copier.stop()
            await poisoner.stop()
            self.report.poison = list(poisoner.sent)
            self.console.print("faults stopped; waiting for every order")
            await self._timed("orders after the faults", self._wait_for(orders))
            # The bound is on recovery: orders under way when the faults stopped. One begun later
            # ran on a healthy stack (it waited for a slot), so its time says nothing of the faults.
            self.report.after_faults = {
                self._order_id(i): at - stopped for i, at in ended.items() if at > stopped and begun[i] <= stopped
            }
            self.report.begun_after_faults = sum(1 for at in begun.values() if at > stopped)
            await self._timed("settle after moving the clock", self._settle(runner))
        finally:
            for task in (*background, *orders):
                task.cancel()
            await asyncio.gather(*background, *orders, return_exceptions=True)

    def _injectors_alive(self, tasks: list[asyncio.Task[None]]) -> None:
        """A fault injector that died early leaves a run that tested less than it says: a violation."""
        for task in tasks:
            if task.done() and not task.cancelled() and (error := task.exception()) is not None:
                self.report.injector_errors.append(f"{task.get_coro().__qualname__}: {error!r}")  # type: ignore[union-attr]

    def _order_id(self, index: int) -> str:
        driven = self.report.driven.get(index)
        return (driven.order_id if driven else None) or f"plan {index}"

    async def _one(
        self,
        runner: ScenarioRunner,
        plan: OrderPlan,
        at: float,
        slots: asyncio.Semaphore,
        times: tuple[dict[int, float], dict[int, float]],
    ) -> None:
        begun, ended = times
        await asyncio.sleep(max(0.0, at - time.monotonic()))
        async with slots:
            begun[plan.index] = time.time()
            try:
                driven = await drive(runner.world(), plan, timeout=self.options.step_timeout)
            except Exception as error:  # a step timed out or was refused: the order's violation
                self.report.failed_to_drive[plan.index] = f"{plan.branch}: {type(error).__name__}: {error}"
                ended[plan.index] = time.time()
            else:
                self.report.driven[plan.index] = driven
                # Final when its status was published, not when this loop (driving hundreds of
                # orders at once) had also checked the money and came back to it.
                ended[plan.index] = driven.reached_at or time.time()

    async def _wait_for(self, orders: dict[asyncio.Task[None], OrderPlan]) -> None:
        _, pending = await asyncio.wait(orders, timeout=self.options.settle_timeout)
        for task in pending:
            task.cancel()
            plan = orders[task]
            self.report.failed_to_drive[plan.index] = (
                f"{plan.branch}: still under way {self.options.settle_timeout:.0f} s after the faults stopped"
            )

    async def _settle(self, runner: ScenarioRunner) -> None:
        StackClock(self.services.clock_file).advance(CLOCK_MOVE_TO_SETTLE)
        driven = list(self.report.driven.values())
        settled = await asyncio.gather(
            *(settle(runner.world(), d, timeout=self.options.step_timeout) for d in driven), return_exceptions=True
        )
        for before, after in zip(driven, settled, strict=True):
            plan = before.plan
            if isinstance(after, BaseException):
                self.report.failed_to_drive[plan.index] = f"{plan.branch} after the clock moved: {after!r}"
            else:
                self.report.driven[plan.index] = after

    # ------------------------------------------------------------------ the checks

    async def _check(self, runner: ScenarioRunner) -> None:
        report, options = self.report, self.options
        found: list[checks.Violation] = []
        found += checks.outcome_violations(
            (f"order {d.plan.index} ({d.plan.branch})", d.order_id, d.expected, d.outcome)
            for d in report.driven.values()
        )
        found += [
            checks.Violation("order_ended", f"plan {i}", what) for i, what in sorted(report.failed_to_drive.items())
        ]
        allowance = {
            d.order_id: SCHEDULED_WAIT[d.plan.branch].total_seconds()
            for d in report.driven.values()
            if d.order_id and d.plan.branch in SCHEDULED_WAIT
        }
        found += checks.slow_violations(report.after_faults, options.final_within, allowance)
        found += [checks.Violation("faults_injected", "injector", error) for error in report.injector_errors]
        checked = time.monotonic()
        report.audit = await audit_stack(options.state_dir, AuditLimits(), attempts=5)
        report.seconds["audit"] = time.monotonic() - checked
        found += [checks.Violation("books", b.subject, f"{b.code}: {b.detail}") for b in report.audit.breaks]
        books = await read_books(Endpoints.of_stack(options.state_dir), FileClock(self.services.clock_file))
        found += checks.ledger_effect_violations(books.ledger.records)
        letters = await read_dead_letters(options.bootstrap)
        report.dead_letters = len(letters)
        found += checks.poison_violations(report.poison, letters, SERVICES)
        checked = time.monotonic()
        found += checks.lag_violations(await _eventually_caught_up(options.bootstrap))
        report.seconds["lag"] = time.monotonic() - checked
        layout, checked = self.services.layout, time.monotonic()
        everywhere = [*_by_topic(await all_records(options.bootstrap)), *stack_files(layout, self.services.log_dir)]
        found += checks.secret_violations(findings(stack_secrets(layout), everywhere))
        report.seconds["secrets"] = time.monotonic() - checked
        report.violations = found
        if (first := report.first_broken_order()) is not None:
            report.first_timeline = runner.watcher.about(first)
        (options.state_dir / "report.json").write_text(json.dumps(report.as_json(), indent=2))


def _by_topic(records: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """One blob per topic (``topic@offset`` sources joined): each secret is then searched a dozen
    times, not once per record of a run's hundreds of thousands."""
    blobs: dict[str, list[bytes]] = {}
    for where, data in records:
        blobs.setdefault(where.split("@", 1)[0], []).append(data)
    return [(topic, b"\n".join(parts)) for topic, parts in blobs.items()]


async def consumer_lag(bootstrap: str, groups: tuple[str, ...] = SERVICES) -> dict[tuple[str, str, int], int]:
    """Records each service's group has not committed past, per partition it reads."""
    options = {**client_options(ADMIN), "bootstrap_servers": bootstrap}
    admin = AIOKafkaAdminClient(**options)
    consumer = AIOKafkaConsumer(**options, enable_auto_commit=False)
    await admin.start()
    await consumer.start()
    try:
        lag: dict[tuple[str, str, int], int] = {}
        for group in groups:
            committed = await admin.list_consumer_group_offsets(group)
            read = [
                TopicPartition(t.name, p) for t in ALL_TOPICS if group in consumers_of(t) for p in range(t.partitions)
            ]
            ends = await consumer.end_offsets(read)
            for tp in read:
                at = committed[tp].offset if tp in committed else 0
                lag[(group, tp.topic, tp.partition)] = max(0, ends[tp] - max(at, 0))
        return lag
    finally:
        await consumer.stop()
        await admin.close()


async def _eventually_caught_up(bootstrap: str, timeout: float = 30.0) -> dict[tuple[str, str, int], int]:
    """The lag once it is zero everywhere, or as it stands after ``timeout`` (the last batches commit
    a moment after their effects)."""
    deadline = time.monotonic() + timeout
    while True:
        lag = await consumer_lag(bootstrap)
        if not any(lag.values()) or time.monotonic() > deadline:
            return lag
        await asyncio.sleep(1.0)


def run_chaos(options: ChaosOptions, console: Console) -> ChaosReport:
    """The whole run, blocking; the caller prints the report (:mod:`scripts.chaos.report`)."""
    return asyncio.run(ChaosRun(options, console).run())
