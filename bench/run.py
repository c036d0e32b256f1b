"""One benchmark run of the whole stack: transport ceiling, then orders through the happy path.

    python -m bench.run [--smoke] [--rate N] [--duration S] [--baseline PATH] [--out bench/results]

1. Starts a private broker (scripts/kafka.sh on port 19292, data in .cache/kafka/bench-data,
   wiped first; override with BENCH_KAFKA_PORT / BENCH_KAFKA_CONTROLLER_PORT /
   BENCH_KAFKA_DATA_DIR), creates the topics and starts the five services (LOG_LEVEL
   WARNING, databases and logs in a fresh .cache/bench/<mode>/, metrics on
   <SERVICE>_HTTP_PORT 19301..19305, see bench.metrics).
2. Transport ceiling with raw aiokafka (bench.transport): hop latency, produce/consume rates.
3. Orders (bench.orders), open-loop: a warm-up and a trace of single orders; then 30 s with
   no orders at all (idle CPU per process); 30 s each at 10/s and 20/s (CPU per order, and
   the hop latency budget at 20/s); a fixed rate (--rate, default 75/s, also a hop budget);
   a search for the highest rate that holds without backlog growth, starting above the
   highest rate held so far; then that rate sustained for --duration seconds.
4. Around every phase each service's /metrics is scraped (SQL statements and messages
   consumed, hop stage histograms); a service without metrics is reported "n/a".
5. Storage (bench.storage): bytes per order of each service database (files incl. -wal, and
   pages in use) and of Kafka's tradeguard.* partitions, grown since the buyers were funded,
   over the orders stored. Once the last phase is done the services' clock (X8) is moved past
   every retention window and the pruner (shared.retention) given time to bring the tables back,
   so the figures are "after pruning"; with ``RETENTION_ENABLED=false`` "before pruning".
6. Prints a summary, the targets (met / not met) and every figure beside the same figure of
   the baseline run (--baseline, default bench/results/baseline-407f125.json), writes
   <out>/latest.json (+ a timestamped copy) and <out>/latest.png (``--smoke`` writes
   latest-smoke.*, so it never overwrites a full run's files).

A phase "holds" when the in-flight orders (checked out, not finished) do not trend
upward over the second half of its sending window (least-squares slope at most
``slope_fraction * rate`` orders/s per second), its orders all finish within
``drain_limit`` seconds after the last Checkout, none fails, and the driver kept its
schedule. "CPU per order" is the CPU time of the five services and Kafka (not the bench
driver) from a phase's first Checkout until its last order finished and every service
consumed everything, divided by the orders completed. Everything started is stopped on
exit, errors and Ctrl-C included.

Tests call :func:`run_smoke`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
import uuid
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.metrics import MetricsScraper, free_ports, phase_metrics
from bench.monitor import CpuMeter, OffsetReader, Sampler, records_between, stack_total
from bench.orders import (
    HAPPY_PATH_HOPS,
    HOPS_TO_COMPLETED,
    HOPS_TO_IN_ESCROW,
    OFF_PATH_MESSAGES,
    OrderDriver,
    OrderTimes,
    latency_summary,
)
from bench.report import console, machine_info, print_summary, write_results
from bench.soak_verdict import judge_tables
from bench.stack import RunningStack, bench_stack
from bench.stats import safe_ratio, slope
from bench.storage import (
    PruneWait,
    Rows,
    StorageMeter,
    StorageSample,
    kafka_data_dir_of_running_broker,
    move_clock_and_wait,
    per_order,
    pruned_tables,
    pruner_env,
    pruner_every,
    sample_in_thread,
)
from bench.targets import DEFAULT_BASELINE, baseline_figures, comparison, key_figures, load_baseline, targets
from bench.trace import trace
from bench.transport import TOPICS as TRANSPORT_TOPICS
from bench.transport import measure_transport
from scripts.stack import ROOT, SERVICES

# Records on tradeguard.* topics per completed order on the happy path: the commands and
# events of HAPPY_PATH_HOPS other than the two status changes, the off-path seller payout,
# plus 5 OrderStatusChanged (payment_pending, paid, in_escrow, releasing, completed).
EXPECTED_MESSAGES_PER_ORDER = len(HAPPY_PATH_HOPS) - 2 + len(OFF_PATH_MESSAGES) + 5

# The processes whose CPU is the stack's: the five services and the broker (not the bench).
STACK_PROCESSES = (*SERVICES, "kafka")


@dataclass(frozen=True, slots=True)
class BenchConfig:
    """Everything that shapes a run; ``smoke()`` is the tiny variant."""

    mode: str = "full"
    rate: float = 75.0
    fixed_duration: float = 30.0
    duration: float = 120.0
    sustain_rate: float | None = None
    idle_settle: float = 5.0
    idle_seconds: float = 30.0
    cpu_rates: tuple[float, ...] = (10.0, 20.0)
    cpu_duration: float = 30.0
    search: bool = True
    # Steps at or below the highest rate an earlier phase held (10, 20, 75) are skipped.
    search_rates: tuple[float, ...] = (100, 150, 200, 250, 300, 400, 500, 600)
    search_window: float = 20.0
    refine_search: bool = True
    # Long enough for the broker's JIT: a fresh JVM spends its first thousand orders compiling,
    # which the 10/s phase used to pay for.
    warmup_rate: float = 50.0
    warmup_seconds: float = 20.0
    trace_orders: int = 20
    accounts: int = 200
    pings: int = 500
    raw_count: int = 50_000
    transport_time_limit: float = 60.0
    slope_fraction: float = 0.05
    drain_limit: float = 10.0
    drain_wait: float = 180.0
    timeout: float = 3600.0
    baseline: str | None = DEFAULT_BASELINE
    # Storage after pruning: the services' clock moved past every retention window at the end.
    clock_move_days: float = 40.0
    prune_stall: float = 60.0
    prune_wait: float = 900.0
    pruner_every: float | None = None
    """The services' ``RETENTION_EVERY_SECONDS`` (None: theirs); the smoke run's pruner is quicker."""

    @classmethod
    def smoke(cls) -> BenchConfig:
        return cls(
            mode="smoke",
            rate=5.0,
            fixed_duration=3.0,
            duration=3.0,
            sustain_rate=10.0,
            idle_settle=1.0,
            idle_seconds=3.0,
            cpu_duration=3.0,
            search=False,
            warmup_rate=5.0,
            warmup_seconds=1.0,
            trace_orders=2,
            accounts=5,
            pings=30,
            raw_count=2_000,
            transport_time_limit=15.0,
            drain_limit=10.0,
            drain_wait=30.0,
            timeout=300.0,
            prune_stall=5.0,
            prune_wait=30.0,
            pruner_every=2.0,
        )


@dataclass(slots=True)
class Session:
    """What the order phases share."""

    config: BenchConfig
    stack: RunningStack
    driver: OrderDriver
    offsets: OffsetReader
    sampler: Sampler
    cpu: CpuMeter
    scraper: MetricsScraper


# ---------------------------------------------------------------- phases


async def settle(offsets: OffsetReader, timeout: float = 10.0) -> None:
    """Wait until every service has consumed everything: the seller payouts follow completion."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if not any((await offsets.lag(SERVICES, await offsets.end_offsets())).values()):
            return
        await asyncio.sleep(0.1)


async def run_phase(
    session: Session, name: str, rate: float, duration: float, *, quiet: bool = False
) -> dict[str, Any]:
    """Offer ``rate`` orders/s for ``duration`` s, wait for them to finish, and judge the backlog.

    Each service's metrics are scraped before the first Checkout and after everything was
    consumed. ``quiet`` pauses the sampler's lag queries (for the CPU-per-order phases).
    """
    config, driver, sampler = session.config, session.driver, session.sampler
    session.stack.check_alive()
    console.print(f"phase [bold]{name}[/]: {rate:g} orders/s for {duration:g} s")
    offsets_before = await session.offsets.end_offsets()
    metrics_before = await session.scraper.scrape()
    sampler.sample_lag = not quiet
    sampler.phase, sampler.sending = name, True
    cpu_start, t_start = session.cpu.snapshot(), sampler.elapsed()
    schedule = await driver.run_schedule(name, rate, duration)
    cpu_end, t_end, sending_ended = session.cpu.snapshot(), sampler.elapsed(), time.perf_counter()
    sampler.sending = False
    drain_seconds = await driver.drain(name, timeout=config.drain_wait)
    await settle(session.offsets)
    cpu_drained = session.cpu.snapshot()
    sampler.sample_lag = True
    metrics = phase_metrics(metrics_before, await session.scraper.scrape())
    session.stack.check_alive()
    driver.check_watcher()
    records = records_between(offsets_before, await session.offsets.end_offsets())
    orders = driver.phase_orders(name)
    completed = sum(o.completed is not None for o in orders)
    failed = [o.failed for o in orders if o.failed is not None]
    window = [s for s in sampler.samples if t_start <= s["t"] <= t_end]
    steady = window[len(window) // 2 :]
    result: dict[str, Any] = {
        "name": name,
        "offered_rate": rate,
        "duration": duration,
        "window": [round(t_start, 3), round(t_end, 3)],
        "schedule": schedule.as_dict(),
        "sent": len(orders),
        "completed": completed,
        "failed": len(failed),
        "failure_examples": failed[:5],
        "unfinished": len(orders) - completed - len(failed),
        "drain_seconds": round(drain_seconds, 3) if drain_seconds is not None else None,
        "completed_per_s_steady": _mean([s["completed_per_s"] for s in steady]),
        **_completion_rates(orders, sending_ended, schedule.seconds, drain_seconds),
        "latency": latency_summary(orders),
        "cpu": CpuMeter.between(cpu_start, cpu_end),
        "cpu_ms_per_completed_order": _cpu_per_order(CpuMeter.between(cpu_start, cpu_drained), completed),
        "messages": _messages(records, len(orders), completed),
        "service_metrics": metrics,
        "max_lag": _max_lag(window),
    }
    result["backlog"] = judge_backlog(result, steady, config)
    verdict = "held" if result["backlog"]["held"] else f"did NOT hold ({', '.join(result['backlog']['reasons'])})"
    statements = (metrics["all"] or {}).get("sql_statements_per_message")
    console.print(
        f"  {completed}/{len(orders)} completed, steady {result['completed_per_s_steady']} orders/s, "
        f"in_escrow p99 {result['latency']['to_in_escrow_ms'].get('p99')} ms, "
        f"CPU {(result['cpu_ms_per_completed_order'] or {}).get('stack')} ms/order, "
        f"SQL {statements if statements is not None else 'n/a'}/msg, "
        f"drain {result['drain_seconds']} s: {verdict}"
    )
    return result


async def measure_idle(session: Session) -> dict[str, Any]:
    """CPU of every process with no orders flowing, once the stack has settled after the warm-up.

    The bench's own clients stay quiet meanwhile (no lag queries, the order watcher paused),
    so the broker's share is the services' doing.
    """
    config, sampler = session.config, session.sampler
    session.stack.check_alive()
    console.print(
        f"phase [bold]idle[/]: no orders; {config.idle_settle:g} s to settle, then CPU over {config.idle_seconds:g} s"
    )
    sampler.phase, sampler.sample_lag = "idle", False
    try:
        await settle(session.offsets)
        session.driver.pause_watching()
        await asyncio.sleep(config.idle_settle)
        metrics_before = await session.scraper.scrape()
        t_start, cpu_start = sampler.elapsed(), session.cpu.snapshot()
        await asyncio.sleep(config.idle_seconds)
        t_end, cpu_end = sampler.elapsed(), session.cpu.snapshot()
        metrics = phase_metrics(metrics_before, await session.scraper.scrape())
    finally:
        session.driver.resume_watching()
        sampler.sample_lag = True
    session.stack.check_alive()
    cpu = CpuMeter.between(cpu_start, cpu_end)
    per_process = cpu["percent_of_one_core"]
    stack = {name: per_process[name] for name in STACK_PROCESSES if name in per_process}
    result: dict[str, Any] = {
        "seconds": cpu["seconds"],
        "window": [round(t_start, 3), round(t_end, 3)],
        "percent_of_one_core": stack,
        "total_percent_of_one_core": stack_total(stack),
        "kafka_measured": "kafka" in stack,
        "bench_percent_of_one_core": per_process.get("bench"),
        "machine_busy_cores": cpu["machine_busy_cores"],
        "other_processes_cores": cpu["other_processes_cores"],
        "machine_steal_percent": cpu["machine_steal_percent"],
        "service_metrics": metrics,
    }
    shares = ", ".join(f"{name} {pct:.2f}" for name, pct in stack.items())
    console.print(f"  idle CPU, % of one core: {shares}; total {result['total_percent_of_one_core']}")
    return result


def _completion_rates(
    orders: list[OrderTimes], sending_ended: float, send_seconds: float, drain_seconds: float | None
) -> dict[str, float | None]:
    """Completions/s while Checkouts were still arriving and after they stopped (the drain)."""
    done = [o.completed for o in orders if o.completed is not None]
    while_sending = sum(t <= sending_ended for t in done)
    after = len(done) - while_sending
    drain_span = (max(done) - sending_ended) if after else 0.0
    return {
        "completed_per_s_while_sending": round(while_sending / send_seconds, 2) if send_seconds > 0 else None,
        "completed_per_s_during_drain": round(after / drain_span, 2) if drain_span > 0 and drain_seconds else None,
    }


def _cpu_per_order(cpu: dict[str, Any], completed: int) -> dict[str, float] | None:
    """CPU ms per completed order per process, over sending + drain (meaningful once drained)."""
    if not completed:
        return None
    seconds = cpu["seconds"]
    per_process = {n: round(10 * pct * seconds / completed, 2) for n, pct in cpu["percent_of_one_core"].items()}
    stack = stack_total(per_process)
    per_process["all_measured"] = round(sum(per_process.values()), 2)  # the bench driver included
    per_process["stack"] = stack if stack is not None else 0.0  # services and Kafka only
    return per_process


def _messages(records: dict[str, int], sent: int, completed: int) -> dict[str, Any]:
    """Records on tradeguard.* topics during the phase (and its drain), per order."""
    total = sum(records.values())
    return {
        "records_by_topic": records,
        "total": total,
        "per_completed_order": round(total / completed, 2) if completed else None,
        "per_sent_order": round(total / sent, 2) if sent else None,
        "all_finished": completed == sent,
        "expected_per_order": EXPECTED_MESSAGES_PER_ORDER,
    }


def judge_backlog(phase: dict[str, Any], steady: list[dict[str, Any]], config: BenchConfig) -> dict[str, Any]:
    """Did the phase hold its rate without backlog growth? (See the module docstring.)"""
    rate = phase["offered_rate"]
    growth = slope([s["t"] for s in steady], [s["in_flight"] for s in steady])
    limit = max(1.0, config.slope_fraction * rate)
    reasons: list[str] = []
    if growth > limit:
        reasons.append(f"in-flight grew {growth:.1f}/s")
    drain = phase["drain_seconds"]
    if drain is None or drain > config.drain_limit:
        reasons.append(f"drain {'> ' + str(config.drain_wait) if drain is None else f'{drain:.1f}'} s")
    if phase["failed"]:
        reasons.append(f"{phase['failed']} orders failed")
    achieved = phase["schedule"]["achieved_rate"] or 0
    if achieved < 0.95 * rate:
        reasons.append(f"driver offered only {achieved:.0f}/s")
    return {
        "held": not reasons,
        "reasons": reasons,
        "in_flight_slope": round(growth, 3),
        "slope_limit": limit,
        "steady_samples": len(steady),
        "in_flight_at_end": steady[-1]["in_flight"] if steady else None,
    }


async def search_max_rate(session: Session, held: float | None = None) -> dict[str, Any]:
    """Step the rate up until a step does not hold; optionally try halfway back once.

    ``held`` is the highest rate an earlier phase held: steps at or below it are skipped,
    and it is the best rate if no step holds.
    """
    config = session.config
    steps: list[dict[str, Any]] = []
    best: float | None = held
    failed_at: float | None = None
    for rate in (r for r in config.search_rates if held is None or r > held):
        step = await run_phase(session, f"search-{rate:g}", rate, config.search_window)
        steps.append(step)
        if not step["backlog"]["held"]:
            failed_at = rate
            break
        best = rate
    if config.refine_search and best is not None and failed_at is not None and failed_at - best > 10:
        middle = round((best + failed_at) / 2)
        step = await run_phase(session, f"search-{middle:g}", middle, config.search_window)
        steps.append(step)
        if step["backlog"]["held"]:
            best = middle
    return {"best_rate": best, "first_failed_rate": failed_at, "held_before_search": held, "steps": steps}


async def drive_orders(stack: RunningStack, config: BenchConfig, run_id: str) -> tuple[dict[str, Any], OrderDriver]:
    """Warm-up, fixed rate, search, sustained: the order half of the results."""
    driver = OrderDriver(stack.bootstrap_servers, run_id, config.accounts)
    offsets = OffsetReader(stack.bootstrap_servers)
    pids = {**stack.pids, "bench": os.getpid()}
    if stack.broker_pid is not None:
        pids["kafka"] = stack.broker_pid
    sampler = Sampler(driver.counters, offsets, SERVICES)
    scraper = MetricsScraper(stack.http_ports)
    session = Session(config, stack, driver, offsets, sampler, CpuMeter(pids), scraper)
    await driver.start()
    await offsets.start()
    try:
        onboarding_seconds = await driver.onboard_buyers(stack.services)
        console.print(f"registered and bound {config.accounts} buyers in {onboarding_seconds:.1f} s")
        funding_seconds = await driver.fund_accounts()
        console.print(
            f"funded {config.accounts} buyers and opened {config.accounts} seller wallets in {funding_seconds:.1f} s"
        )
        meter = StorageMeter(stack.services.database_urls, stack.kafka_data_dir or kafka_data_dir_of_running_broker())
        storage_before = await sample_in_thread(meter)
        sampler.start()
        phases = [await run_phase(session, "warmup", config.warmup_rate, config.warmup_seconds)]
        sampler.phase = "trace"
        console.print(f"tracing {config.trace_orders} orders one at a time on every topic")
        traced = await trace(
            stack.bootstrap_servers, run_id, driver.buyers[0], driver.sellers[0], count=config.trace_orders
        )
        idle = await measure_idle(session)
        phases.extend(
            [
                await run_phase(session, f"cpu-{rate:g}", rate, config.cpu_duration, quiet=True)
                for rate in config.cpu_rates
            ]
        )
        phases.append(await run_phase(session, "fixed", config.rate, config.fixed_duration))
        held = [p["offered_rate"] for p in phases[1:] if p["backlog"]["held"]]
        search = await search_max_rate(session, max(held, default=None)) if config.search else None
        if search is not None:
            phases.extend(search["steps"])
        sustain_rate = config.sustain_rate or _sustain_rate(search, config)
        phases.append(await run_phase(session, "sustained", sustain_rate, config.duration))
        storage = await measure_storage(stack, meter, storage_before, config)
    finally:
        await sampler.stop()
        await offsets.stop()
        await driver.stop()
    orders = {
        "funding_seconds": round(funding_seconds, 2),
        "search": {k: v for k, v in search.items() if k != "steps"} if search else None,
        "trace": traced,
        "idle": idle,
        "phases": phases,
        "timeline": sampler.samples,
        "lag_error": sampler.lag_error,
        "send_errors": driver.counters.send_errors,
        "rejections": driver.rejections[:10],
        "metrics_ports": stack.http_ports,
        "metrics_last_errors": {name: scraper.last_error[name] for name in sorted(scraper.last_error)},
        "storage": storage,
    }
    return orders, driver


async def measure_storage(
    stack: RunningStack, meter: StorageMeter, before: StorageSample, config: BenchConfig
) -> dict[str, Any]:
    """Bytes per order of each database and of Kafka since ``before`` (taken once the buyers were
    funded), after pruning when the services have a pruner (shared.retention): the services'
    clock is moved past every retention window and the tables given time to shrink (back to
    what they held at ``before``). Without a pruner, measured as the run left them ("before pruning")."""
    end = await sample_in_thread(meter)
    result: dict[str, Any] = {
        "baseline": before.as_dict(),
        "before_pruning": end.as_dict(),
        "bytes_per_order_before_pruning": per_order(before, end),
        "after_pruning": None,
        "bytes_per_order_after_pruning": None,
        "pruned_tables": None,
    }
    pruned = pruned_tables()
    if pruned is None:
        result["measured"] = "before pruning"
    else:

        def shrunk_back(rows: Rows) -> bool:
            return all(check.ok for check in judge_tables(before.rows(), end.rows(), rows))

        console.print(f"storage: moving the services' clock {config.clock_move_days:g} days on, for the pruner")
        after, waited = await move_clock_and_wait(
            meter,
            stack.services.clock_file,
            config.clock_move_days,
            shrunk_back,
            PruneWait(
                poll=min(5.0, config.prune_stall),
                stall=config.prune_stall,
                limit=config.prune_wait,
                pruner_every=pruner_every(pruner_env(config.pruner_every)),
            ),
        )
        checks = judge_tables(before.rows(), end.rows(), after.rows(), pruned=pruned)
        result.update(
            measured="after pruning",
            after_pruning=after.as_dict(),
            bytes_per_order_after_pruning=per_order(before, after),
            pruned_tables={name: sorted(tables) for name, tables in pruned.items()},
            clock_moved_days=config.clock_move_days,
            prune_wait_seconds=waited,
            still_growing=[f"{c.service}.{c.table}" for c in checks if not c.ok],
        )
    result["bytes_per_order"] = result["bytes_per_order_after_pruning"] or result["bytes_per_order_before_pruning"]
    result["table_bytes"] = await asyncio.to_thread(meter.table_bytes)
    per = result["bytes_per_order"]
    console.print(
        f"storage ({result['measured']}): {per['databases_file']} B/order in the databases' files "
        f"({per['databases_live']} B in use), {per['kafka_tradeguard']} B/order in Kafka, over {per['orders']} orders"
    )
    return result


def _sustain_rate(search: dict[str, Any] | None, config: BenchConfig) -> float:
    """The search's best rate; half its lowest step if none held; the fixed rate without a search."""
    if search is None:
        return config.rate
    best: float | None = search["best_rate"]
    return best if best is not None else min(config.search_rates) / 2


# ---------------------------------------------------------------- summary


def _signing_figures(results: dict[str, Any], cpu_phase: dict[str, Any] | None) -> dict[str, Any]:
    """What signing and verifying cost per order (X9), and its share of the stack's CPU per order."""
    signing = (results.get("trace") or {}).get("signing")
    if not signing:
        return {}
    cpu_ms = (cpu_phase["cpu_ms_per_completed_order"] or {}).get("all_measured") if cpu_phase else None
    percent = 100 * signing["us_per_order"] / 1000 / cpu_ms if cpu_ms else None
    return {
        "signing_us_per_order": signing["us_per_order"],
        "signing_percent_of_cpu_per_order": _round(percent, 2),
        "signing_macs_per_order": signing["macs_made_per_order"],
        "signing_verifications_per_order": signing["verifications_per_order"],
    }


def summarize(results: dict[str, Any], config: BenchConfig) -> dict[str, Any]:
    """Headline figures, ratios and target verdicts from the raw results."""
    phases = {p["name"]: p for p in results["phases"]}
    fixed, sustained = phases.get("fixed"), phases.get("sustained")
    transport = results["transport"]
    hop_p50 = transport["ping_pong"]["hop_ms"].get("p50")
    raw_produce = transport["produce"]["msgs_per_s"]
    search = results.get("search") or {}

    def p(phase: dict[str, Any] | None, which: str, pct: str) -> float | None:
        return phase["latency"][which].get(pct) if phase else None

    path_ms = HOPS_TO_COMPLETED * hop_p50 if hop_p50 else None
    e2e_fixed = safe_ratio(p(fixed, "to_completed_ms", "p50"), path_ms)
    e2e_sustained = safe_ratio(p(sustained, "to_completed_ms", "p50"), path_ms)
    e2e_unloaded = safe_ratio((results.get("trace") or {}).get("checkout_to_completed_ms_p50"), path_ms)
    escrow_fixed = safe_ratio(p(fixed, "to_in_escrow_ms", "p50"), HOPS_TO_IN_ESCROW * hop_p50 if hop_p50 else None)
    # Only a phase whose orders all finished counts its records per order right.
    finished = [ph for ph in (sustained, fixed, *results["phases"][::-1]) if ph and ph["messages"]["all_finished"]]
    counted = finished[0] if finished else None
    msgs_per_order = counted["messages"]["per_completed_order"] if counted else None
    cpu_phase = next((ph for ph in (sustained, fixed) if ph and ph["messages"]["all_finished"]), counted)
    throughput = sustained["completed_per_s_steady"] if sustained else None
    throughput_ratio = safe_ratio(
        throughput * msgs_per_order if throughput is not None and msgs_per_order is not None else None, raw_produce
    )
    figures: dict[str, Any] = {
        "hop_p50_ms": hop_p50,
        "hop_p99_ms": transport["ping_pong"]["hop_ms"].get("p99"),
        "raw_produce_msgs_per_s": raw_produce,
        "raw_consume_msgs_per_s": transport["consume"]["msgs_per_s"],
        "max_sustainable_rate_search": search.get("best_rate"),
        "first_failed_rate_search": search.get("first_failed_rate"),
        "sustained_offered_rate": sustained["offered_rate"] if sustained else None,
        "sustained_held": sustained["backlog"]["held"] if sustained else None,
        "sustained_completed_per_s": throughput,
        "fixed_rate": fixed["offered_rate"] if fixed else None,
        "fixed_in_escrow_p50_ms": p(fixed, "to_in_escrow_ms", "p50"),
        "fixed_in_escrow_p95_ms": p(fixed, "to_in_escrow_ms", "p95"),
        "fixed_in_escrow_p99_ms": p(fixed, "to_in_escrow_ms", "p99"),
        "fixed_completed_p50_ms": p(fixed, "to_completed_ms", "p50"),
        "fixed_completed_p95_ms": p(fixed, "to_completed_ms", "p95"),
        "fixed_completed_p99_ms": p(fixed, "to_completed_ms", "p99"),
        "sustained_in_escrow_p99_ms": p(sustained, "to_in_escrow_ms", "p99"),
        "sustained_completed_p50_ms": p(sustained, "to_completed_ms", "p50"),
        "sustained_completed_p99_ms": p(sustained, "to_completed_ms", "p99"),
        "messages_per_order": msgs_per_order,
        "messages_per_order_phase": counted["name"] if counted else None,
        "cpu_ms_per_order_all_processes": (cpu_phase["cpu_ms_per_completed_order"] or {}).get("all_measured")
        if cpu_phase
        else None,
        "cpu_ms_per_order_phase": cpu_phase["name"] if cpu_phase else None,
        **_signing_figures(results, cpu_phase),
        "hops_to_in_escrow": HOPS_TO_IN_ESCROW,
        "hops_to_completed": HOPS_TO_COMPLETED,
        "e2e_ratio_fixed": _round(e2e_fixed),
        "e2e_ratio_sustained": _round(e2e_sustained),
        "e2e_ratio_unloaded_trace": _round(e2e_unloaded),
        "in_escrow_ratio_fixed": _round(escrow_fixed),
        "throughput_to_raw_produce_ratio": _round(throughput_ratio, 4),
    }
    figures.update(key_figures(results))
    figures.update(storage_figures(results.get("storage")))
    baseline, baseline_error = load_baseline(config.baseline)
    before = baseline_figures(baseline) if baseline else None
    return {
        "figures": figures,
        "ratio_definitions": {
            "e2e_ratio": f"p50(checkout->completed) / ({HOPS_TO_COMPLETED} hops x p50 hop latency)",
            "in_escrow_ratio": f"p50(checkout->in_escrow) / ({HOPS_TO_IN_ESCROW} hops x p50 hop latency)",
            "throughput_to_raw_produce_ratio": "(sustained completed orders/s x messages per order) / raw produce msgs/s",
            "hop": "one produce + consume = ping-pong round trip / 2",
            "cpu_ms_per_order_all_processes": "as before: services, Kafka and the bench driver",
            "cpu_ms_per_order_at_*": "services + Kafka, bench driver excluded, first Checkout to all consumed",
            "idle_stack_percent_of_one_core": "services + Kafka, no orders, over the idle phase",
            "sql_statements_per_message": "sum of SQL statements / sum of messages consumed, all services",
            "hop_stage_sum_ms": "sum over stages of the stage's mean (averaged over services)",
            "db_bytes_per_order": "growth of the five database files (incl. -wal) since the buyers were funded / "
            "orders stored; after pruning when the services prune (storage_measured)",
            "db_live_bytes_per_order": "the same for the pages in use (SQLite keeps freed pages in the file)",
            "kafka_bytes_per_order": "growth of the tradeguard.* partitions on disk / orders stored",
        },
        "baseline": {
            "path": config.baseline,
            "error": baseline_error,
            "git_head": ((baseline or {}).get("meta", {}).get("machine", {}).get("code", {}) or {}).get("git_head"),
            "started_at": (baseline or {}).get("meta", {}).get("started_at"),
        },
        "targets": targets(figures, before),
        "comparison": comparison(figures, before),
    }


def storage_figures(storage: dict[str, Any] | None) -> dict[str, Any]:
    """Bytes per order in the databases (files, and pages in use) and in Kafka, and when measured."""
    per = (storage or {}).get("bytes_per_order") or {}
    return {
        "storage_measured": (storage or {}).get("measured"),
        "db_bytes_per_order": per.get("databases_file"),
        "db_live_bytes_per_order": per.get("databases_live"),
        "archive_bytes_per_order": per.get("archives"),
        "kafka_bytes_per_order": per.get("kafka_tradeguard"),
    }


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 2) if values else None


def _round(value: float | None, digits: int = 2) -> float | None:
    return round(value, digits) if value is not None else None


def _max_lag(samples: list[dict[str, Any]]) -> dict[str, int]:
    worst: dict[str, int] = {}
    for sample in samples:
        for group, lag in (sample.get("lag") or {}).items():
            worst[group] = max(worst.get(group, 0), lag)
    return worst


# ---------------------------------------------------------------- entry points


async def run_bench(
    config: BenchConfig,
    *,
    bootstrap_servers: str | None = None,
    out_dir: Path | None = None,
    work_name: str | None = None,
    http_ports: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Run everything once; returns the results dict (also written to ``out_dir`` when given).

    Service databases and logs go to ``.cache/bench/<work_name or mode>/``, emptied first;
    the services serve their metrics on ``http_ports`` (default 19301..19305).
    """
    run_id = f"b{uuid.uuid4().hex[:6]}"
    results: dict[str, Any] = {
        "meta": {
            "run_id": run_id,
            "mode": config.mode,
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "config": asdict(config),
            "external_broker": bootstrap_servers is not None,
            "machine": machine_info(),
        }
    }
    driver: OrderDriver | None = None
    timings = results["meta"]["stage_seconds"] = {}
    start = time.perf_counter()
    async with (
        asyncio.timeout(config.timeout),
        bench_stack(
            work_name or config.mode,
            bootstrap_servers=bootstrap_servers,
            extra_topics=TRANSPORT_TOPICS,
            http_ports=http_ports,
            extra_env=pruner_env(config.pruner_every),
        ) as stack,
    ):
        timings["stack_start"] = round(time.perf_counter() - start, 1)
        results["meta"]["bootstrap_servers"] = stack.bootstrap_servers
        results["meta"]["pids"] = {**stack.pids, "kafka": stack.broker_pid, "bench": os.getpid()}
        console.print(f"stack ready on {stack.bootstrap_servers}; measuring the transport ceiling")
        results["transport"] = await measure_transport(
            stack.bootstrap_servers,
            pings=config.pings,
            raw_count=config.raw_count,
            time_limit=config.transport_time_limit,
        )
        timings["transport"] = round(time.perf_counter() - start - timings["stack_start"], 1)
        orders, driver = await drive_orders(stack, config, run_id)
        results.update(orders)
        timings["orders"] = round(time.perf_counter() - start - timings["stack_start"] - timings["transport"], 1)
        stop_started = time.perf_counter()
    timings["stack_stop"] = round(time.perf_counter() - stop_started, 1)
    results["meta"]["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    results["summary"] = summarize(results, config)
    if out_dir is not None:
        prefix = "latest" if config.mode == "full" else f"latest-{config.mode}"
        for path in write_results(results, driver.orders.values() if driver else [], out_dir, prefix):
            console.print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return results


async def run_smoke(bootstrap_servers: str | None = None) -> dict[str, Any]:
    """A tiny run for tests: a few orders at a low rate, no search, no files written.

    With ``bootstrap_servers`` that broker is used and Kafka is neither started nor stopped
    (pass it from tests: without it the bench's own broker on port 19292 is reset, which
    would end a ``python -m bench.run`` running at the same time). Service databases and
    logs go to ``.cache/bench/smoke-test/``; the metrics ports are free ones picked now, so a
    bench running at the same time keeps 19301..19305.
    """
    return await run_bench(
        BenchConfig.smoke(), bootstrap_servers=bootstrap_servers, work_name="smoke-test", http_ports=free_ports()
    )


def parse_args(argv: list[str] | None = None) -> tuple[BenchConfig, Path, str | None]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny run: a few orders, short phases, no search")
    parser.add_argument("--rate", type=float, help="fixed-phase offered rate, orders/s (default 75)")
    parser.add_argument("--duration", type=float, help="sustained phase seconds (default 120)")
    parser.add_argument("--fixed-duration", type=float, help="fixed phase seconds (default 30)")
    parser.add_argument("--sustain-rate", type=float, help="sustain this rate instead of the search's best")
    parser.add_argument("--search-rates", help="comma-separated search steps, orders/s")
    parser.add_argument("--search-window", type=float, help="seconds per search step (default 20)")
    parser.add_argument("--no-search", action="store_true", help="skip the search")
    parser.add_argument("--idle-seconds", type=float, help="idle CPU measurement seconds (default 30)")
    parser.add_argument("--cpu-rates", help="comma-separated rates of the CPU-per-order phases (default 10,20)")
    parser.add_argument("--cpu-duration", type=float, help="seconds per CPU-per-order phase (default 30)")
    parser.add_argument(
        "--baseline", help=f"results JSON of an earlier run to compare with (default {DEFAULT_BASELINE}; '' for none)"
    )
    parser.add_argument("--timeout", type=float, help="global timeout, seconds")
    parser.add_argument("--bootstrap-servers", help="use this running broker instead of starting one")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results", help="results directory")
    args = parser.parse_args(argv)
    config = BenchConfig.smoke() if args.smoke else BenchConfig()
    overrides: dict[str, Any] = {
        "rate": args.rate,
        "duration": args.duration,
        "fixed_duration": args.fixed_duration,
        "sustain_rate": args.sustain_rate,
        "search_window": args.search_window,
        "idle_seconds": args.idle_seconds,
        "cpu_duration": args.cpu_duration,
        "timeout": args.timeout,
    }
    if args.baseline is not None:
        overrides["baseline"] = str(Path(args.baseline).resolve()) if args.baseline else ""
    if args.cpu_rates is not None:
        overrides["cpu_rates"] = tuple(float(r) for r in args.cpu_rates.split(",") if r.strip())
    if args.search_rates:
        overrides["search_rates"] = tuple(float(r) for r in args.search_rates.split(","))
    if args.no_search:
        overrides["search"] = False
    config = replace(config, **{k: v for k, v in overrides.items() if v is not None})
    return config, args.out, args.bootstrap_servers


async def main(argv: list[str] | None = None) -> int:
    config, out_dir, bootstrap = parse_args(argv)
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    results = await run_bench(config, bootstrap_servers=bootstrap, out_dir=out_dir)
    print_summary(results)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main()))
    except KeyboardInterrupt:
        console.print("[yellow]interrupted; everything the bench started has been stopped[/]")
        sys.exit(130)
