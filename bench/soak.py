"""A soak run: a steady rate of mixed orders through the whole stack for a long time, then the
services' clock moved past every retention window: does the cost per order stay flat?

    python -m bench.soak [--rate 100] [--minutes 30] [--interval 60] [--mix confirm=70,...]
                         [--bootstrap-servers HOST:PORT] [--name soak] [--out bench/results]

1. Starts the stack as the bench does (bench.stack: its own broker on port 19292 with its data in
   .cache/kafka/bench-data, wiped first, overridable by BENCH_KAFKA_*; the five services with
   databases and logs in a fresh .cache/bench/<name>/; metrics on free ports), onboards and
   funds the buyers, and warms the stack up (not measured).
2. Offers ``--rate`` Checkouts a second for ``--minutes``, open-loop (bench.mix): most buyers
   confirm, some orders are partly or wholly refunded in escrow, some disputed and resolved by an
   operator (``--mix``). Every ``--interval`` seconds (a minute) it prints and keeps: orders sent
   and finished per second, p50/p99 from checkout to in escrow, CPU ms per finished order (the
   five services and Kafka, as the bench measures it), bytes per order of each service database
   (files with their -wal) and of Kafka (the ``tradeguard.*`` partitions on disk), and the rows of
   every table (bench.storage).
3. Waits for every order to finish, then moves the services' clock (X8: the stack's clock file)
   past every retention window (``--clock-move-days``) and waits for the pruner to bring the
   tables back (until each is at most its first-interval size, or nothing changed for
   ``--prune-stall`` seconds).
4. Judges (bench.soak_verdict): throughput and p99 of the last five minutes against the first five
   (the first and last fifth of a run under ten minutes), every table but the money records,
   every order. Prints the tables, writes ``<out>/<name>-latest.json`` (and a timestamped copy)
   and exits 1 naming each reason when it failed, 0 when it passed.

Tests call :func:`run_soak` with a tiny :class:`SoakConfig` and the tests' broker.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import os
import signal
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.table import Table

from bench.metrics import free_ports
from bench.mix import Mix, MixedDriver
from bench.monitor import CpuMeter, CpuSnapshot, OffsetReader, stack_total
from bench.orders import OrderTimes
from bench.report import console, machine_info
from bench.run import settle
from bench.soak_verdict import (
    P99_SLACK_MS,
    TOLERANCE,
    Window,
    first_and_last,
    judge_performance,
    judge_tables,
    verdict,
)
from bench.stack import RunningStack, bench_stack
from bench.stats import summarize_ms
from bench.storage import (
    KEPT_PER_ORDER,
    PruneWait,
    Rows,
    StorageMeter,
    StorageSample,
    kafka_data_dir_of_running_broker,
    kept_tables,
    move_clock_and_wait,
    per_order,
    pruned_tables,
    pruner_env,
    pruner_every,
    sample_in_thread,
)
from scripts.stack import ROOT

PHASE = "soak"
DEFAULT_MIX = "confirm=70,partial_refund=10,full_refund=10,dispute=10"


@dataclass(frozen=True, slots=True)
class SoakConfig:
    """Everything that shapes a soak run."""

    name: str = "soak"
    rate: float = 100.0
    minutes: float = 30.0
    interval: float = 60.0
    mix: str = DEFAULT_MIX
    accounts: int = 200
    warmup_rate: float = 50.0
    warmup_seconds: float = 20.0
    tolerance: float = TOLERANCE
    p99_slack_ms: float = P99_SLACK_MS
    drain_wait: float = 300.0
    clock_move_days: float = 40.0
    """Past every retention window: idempotency keys 24 h, inbox ids for the deduplication window,
    notifications and order transitions for their archive age."""
    prune_wait: float = 3600.0
    prune_stall: float = 120.0
    prune_poll: float = 5.0
    pruner_every: float | None = None
    """The services' ``RETENTION_EVERY_SECONDS`` (None: theirs, 60 s); short runs make it shorter."""

    @property
    def seconds(self) -> float:
        return self.minutes * 60

    @classmethod
    def short(cls) -> SoakConfig:
        """`make soak-short` (CI): two minutes at 20 orders/s."""
        return cls(name="soak-short", rate=20.0, minutes=2.0, accounts=50, warmup_rate=20.0, warmup_seconds=10.0)


@dataclass(slots=True)
class Soak:
    """What the measuring shares while the run goes."""

    config: SoakConfig
    stack: RunningStack
    driver: MixedDriver
    offsets: OffsetReader
    meter: StorageMeter
    cpu: CpuMeter
    started: float = 0.0
    """perf_counter when the first soak Checkout was due."""
    baseline: StorageSample | None = None
    intervals: list[dict[str, Any]] = field(default_factory=list)
    settled: int = 0
    """How many orders, in the order they were sent, had all ended before the last interval did:
    no later interval can count them, so it does not walk them again (a 30-minute run at 100/s
    has 180,000, and walking them every minute would stall the driver ever longer)."""

    def open_orders(self) -> list[OrderTimes]:
        """The soak's orders an interval from now on may still count (see :attr:`settled`)."""
        rest = itertools.islice(self.driver.orders.values(), self.settled, None)
        return [o for o in rest if o.phase == PHASE]

    def settle_before(self, moment: float) -> None:
        """Move :attr:`settled` past the orders (in sending order) that ended before ``moment``."""
        for order in itertools.islice(self.driver.orders.values(), self.settled, None):
            ended = order.completed if order.completed is not None else (order.sent if order.failed else None)
            if ended is None or ended >= moment or (order.in_escrow is not None and order.in_escrow >= moment):
                return
            self.settled += 1


# ---------------------------------------------------------------- measuring


def soak_orders(driver: MixedDriver) -> list[tuple[str, OrderTimes]]:
    return [(order_id, o) for order_id, o in driver.orders.items() if o.phase == PHASE]


def interval_row(
    session: Soak,
    number: int,
    window: tuple[float, float],
    *,
    cpu: tuple[CpuSnapshot, CpuSnapshot],
    failed: int,
    storage: StorageSample,
) -> dict[str, Any]:
    """One interval's figures (times relative to the start of sending)."""
    start, end = window
    orders = session.open_orders()
    offset = session.started
    sent = sum(start <= o.sent - offset < end for o in orders)
    finished = [o for o in orders if o.completed is not None and start <= o.completed - offset < end]
    latencies = [
        o.in_escrow - o.sent for o in orders if o.in_escrow is not None and start <= o.in_escrow - offset < end
    ]
    between = CpuMeter.between(*cpu)
    cpu_ms = {n: 10 * pct * between["seconds"] for n, pct in between["percent_of_one_core"].items()}
    stack_ms = stack_total(cpu_ms)
    seconds = end - start
    assert session.baseline is not None
    return {
        "interval": number,
        "start": round(start, 1),
        "end": round(end, 1),
        "sent": sent,
        "finished": len(finished),
        "finished_per_s": round(len(finished) / seconds, 2) if seconds > 0 else None,
        "failed": failed,
        "in_flight": session.driver.counters.in_flight,
        "in_escrow_ms": summarize_ms(latencies),
        "cpu_percent_of_one_core": between["percent_of_one_core"],
        "machine_busy_cores": between["machine_busy_cores"],
        "cpu_ms_per_order": round(stack_ms / len(finished), 2) if stack_ms is not None and finished else None,
        "bytes_per_order": per_order(session.baseline, storage),
        "storage": storage.as_dict(),
    }


async def run_intervals(session: Soak) -> None:
    """Send for the run's length; at the end of every interval, measure and print it."""
    config, driver = session.config, session.driver
    session.started = time.perf_counter()
    sending = asyncio.create_task(driver.run_schedule(PHASE, config.rate, config.seconds), name="soak-sending")
    count = max(1, math.ceil(config.seconds / config.interval - 1e-9))
    cpu_before, failed_before = session.cpu.snapshot(), driver.counters.failed
    try:
        for number in range(1, count + 1):
            end = min(number * config.interval, config.seconds)
            delay = session.started + end - time.perf_counter()
            if delay > 0:
                await asyncio.wait({sending}, timeout=delay)
            if sending.done():
                sending.result()  # its error, if it failed
            session.stack.check_alive()
            driver.check_watcher()
            cpu_now, storage = session.cpu.snapshot(), await sample_in_thread(session.meter)
            row = interval_row(
                session,
                number,
                ((number - 1) * config.interval, end),
                cpu=(cpu_before, cpu_now),
                failed=driver.counters.failed - failed_before,
                storage=storage,
            )
            session.intervals.append(row)
            session.settle_before(session.started + end)
            print_interval(row, config.interval)
            cpu_before, failed_before = cpu_now, driver.counters.failed
        await sending
    finally:
        if not sending.done():
            sending.cancel()
            await asyncio.gather(sending, return_exceptions=True)


# ---------------------------------------------------------------- the run


async def run_soak(
    config: SoakConfig,
    *,
    bootstrap_servers: str | None = None,
    kafka_data_dir: Path | None = None,
    out_dir: Path | None = None,
    work_name: str | None = None,
) -> dict[str, Any]:
    """One soak run; returns the results (also written to ``out_dir`` when given).

    With ``bootstrap_servers`` that broker is used and neither started nor stopped (tests); its
    data folder (for Kafka's bytes) is ``kafka_data_dir``, else found from its credentials."""
    mix = Mix.parse(config.mix)
    run_id = f"s{uuid.uuid4().hex[:6]}"
    results: dict[str, Any] = {
        "meta": {
            "run_id": run_id,
            "kind": "soak",
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "config": asdict(config),
            "mix_percent": mix.shares(),
            "external_broker": bootstrap_servers is not None,
            "machine": machine_info(),
            "pruner_tables": {n: sorted(t) for n, t in pruned.items()} if (pruned := pruned_tables()) else None,
            "kept_tables": {s: sorted(t) for s, t in kept_tables().items()},
        }
    }
    budget = config.seconds + config.drain_wait + config.prune_wait + 900
    async with (
        asyncio.timeout(budget),
        bench_stack(
            work_name or config.name,
            bootstrap_servers=bootstrap_servers,
            http_ports=free_ports(),
            extra_env=pruner_env(config.pruner_every),
        ) as stack,
    ):
        kafka_data_dir = stack.kafka_data_dir or kafka_data_dir or kafka_data_dir_of_running_broker()
        results["meta"]["kafka_data_dir"] = str(kafka_data_dir) if kafka_data_dir else None
        pids = {**stack.pids, "bench": os.getpid()}
        kafka_pid = stack.broker_pid or _pid_in(kafka_data_dir)
        if kafka_pid is not None:
            pids["kafka"] = kafka_pid
        driver = MixedDriver(stack.bootstrap_servers, run_id, config.accounts, mix)
        offsets = OffsetReader(stack.bootstrap_servers)
        session = Soak(
            config, stack, driver, offsets, StorageMeter(stack.services.database_urls, kafka_data_dir), CpuMeter(pids)
        )
        await driver.start()
        await offsets.start()
        try:
            results.update(await soak(session))
        finally:
            await offsets.stop()
            await driver.stop()
    results["meta"]["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    if out_dir is not None:
        for path in write_soak_results(results, out_dir, config.name):
            console.print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return results


async def soak(session: Soak) -> dict[str, Any]:
    """Onboard, warm up, send and measure, drain, move the clock, judge."""
    config, driver, stack = session.config, session.driver, session.stack
    onboarding = await driver.onboard_buyers(stack.services)
    onboarding += await driver.register_sellers(stack.services)
    funding = await driver.fund_accounts()
    console.print(
        f"onboarded {config.accounts} buyers and {config.accounts} sellers in {onboarding:.1f} s, "
        f"funded them in {funding:.1f} s"
    )
    warmup_rate = min(config.rate, config.warmup_rate)
    if config.warmup_seconds > 0:
        console.print(f"warm-up: {warmup_rate:g} orders/s for {config.warmup_seconds:g} s (not measured)")
        await driver.run_schedule("warmup", warmup_rate, config.warmup_seconds)
        await driver.drain("warmup", timeout=config.drain_wait)
    await settle(session.offsets)
    session.baseline = await sample_in_thread(session.meter)
    console.print(
        f"soak: {config.rate:g} orders/s for {config.minutes:g} min, figures every {config.interval:g} s; "
        f"mix {driver.mix.shares()}"
    )
    await run_intervals(session)
    drain_started = time.perf_counter()
    drained_in = await driver.drain(PHASE, timeout=config.drain_wait)
    await settle(session.offsets, timeout=60)
    drained = await sample_in_thread(session.meter)
    console.print(
        f"every order finished {time.perf_counter() - drain_started:.1f} s after the last Checkout"
        if drained_in is not None
        else f"[red]orders still unfinished {config.drain_wait:g} s after the last Checkout[/]"
    )
    first, last = _windows(session)
    performance = judge_performance(first, last, tolerance=config.tolerance, p99_slack_ms=config.p99_slack_ms)

    console.print(f"moving the services' clock {config.clock_move_days:g} days on; waiting for the pruner")
    first_counts = {name: figures["rows"] for name, figures in session.intervals[0]["storage"]["databases"].items()}

    def back_within_bounds(rows: Rows) -> bool:
        return all(check.ok for check in judge_tables(first_counts, drained.rows(), rows))

    def report(sample: StorageSample, waited: float) -> None:
        left = [c for c in judge_tables(first_counts, drained.rows(), sample.rows()) if not c.ok]
        rows = ", ".join(f"{c.service}.{c.table} {c.after_move}" for c in left)
        state = f"above their bound: {rows}" if left else "every table within its bound, the pruner's pass ending"
        console.print(f"  pruning, {waited:.0f} s after the clock move; {state}", highlight=False)

    pruned, prune_seconds = await move_clock_and_wait(
        session.meter,
        stack.services.clock_file,
        config.clock_move_days,
        back_within_bounds,
        PruneWait(
            config.prune_poll,
            config.prune_stall,
            config.prune_wait,
            pruner_every=pruner_every(pruner_env(config.pruner_every)),
        ),
        progress=report,
    )
    pruned_names = pruned_tables()
    tables = judge_tables(first_counts, drained.rows(), pruned.rows(), pruned=pruned_names)
    assert session.baseline is not None
    orders = [o for _, o in soak_orders(driver)]
    failures = [o.failed for o in orders if o.failed is not None]
    unfinished = sum(not o.done for o in orders)
    result = {
        "onboarding_seconds": round(onboarding, 1),
        "funding_seconds": round(funding, 1),
        "intervals": session.intervals,
        "windows": {"first": first.as_dict(), "last": last.as_dict()},
        "orders": {
            "sent": len(orders),
            "finished": sum(o.completed is not None for o in orders),
            "failed": len(failures),
            "failure_examples": failures[:10],
            "unfinished": unfinished,
            "by_plan": _by_plan(driver),
            "send_errors": driver.counters.send_errors,
            "rejections": driver.rejections[:10],
            "drain_seconds": round(drained_in, 2) if drained_in is not None else None,
        },
        "storage": {
            "baseline": session.baseline.as_dict(),
            "drained": drained.as_dict(),
            "after_clock_move": pruned.as_dict(),
            "clock_moved_days": config.clock_move_days,
            "prune_wait_seconds": prune_seconds,
            "bytes_per_order_before_pruning": per_order(session.baseline, drained),
            "bytes_per_order_after_pruning": per_order(session.baseline, pruned),
            "table_bytes_after_pruning": await asyncio.to_thread(session.meter.table_bytes),
        },
        "tables": [check.as_dict() for check in tables],
        "verdict": verdict(performance, tables, failed=len(failures), unfinished=unfinished, examples=failures),
    }
    print_summary(result, config)
    return result


def _windows(session: Soak) -> tuple[Window, Window]:
    offset = session.started
    orders = [o for _, o in soak_orders(session.driver)]
    finished_at = [o.completed - offset for o in orders if o.completed is not None]
    in_escrow = [(o.in_escrow - offset, o.in_escrow - o.sent) for o in orders if o.in_escrow is not None]
    return first_and_last(session.config.seconds, finished_at, in_escrow)


def _by_plan(driver: MixedDriver) -> dict[str, dict[str, int]]:
    """Orders sent and finished per plan (flow, and a dispute's resolution)."""
    counts: dict[str, dict[str, int]] = {}
    for order_id, times in soak_orders(driver):
        plan = driver.plans.get(order_id)
        entry = counts.setdefault(plan.name if plan else "?", {"sent": 0, "finished": 0})
        entry["sent"] += 1
        entry["finished"] += times.completed is not None
    return dict(sorted(counts.items()))


def _pid_in(data_dir: Path | None) -> int | None:
    """The broker's pid from the pid file scripts/kafka.sh keeps in its data folder."""
    if data_dir is None:
        return None
    try:
        return int((data_dir / "kafka.pid").read_text().strip())
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------- output


def write_soak_results(results: dict[str, Any], out_dir: Path, name: str) -> list[Path]:
    """``<name>-latest.json`` and a timestamped copy ``<name>-<UTC stamp>.json``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(results, indent=2, default=str) + "\n"
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    paths = [out_dir / f"{name}-latest.json", out_dir / f"{name}-{stamp}.json"]
    for path in paths:
        path.write_text(text)
    return paths


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


SERVICE_COLUMNS = ("account", "payment", "escrow", "notification", "saga")


def _label(interval: float) -> str:
    return "minute" if interval == 60 else f"{interval:g} s"


def print_interval(row: dict[str, Any], interval: float) -> None:
    """The live line of one interval."""
    latency, per = row["in_escrow_ms"], row["bytes_per_order"]
    databases = ", ".join(f"{n} {_fmt(per['databases'].get(n, {}).get('file'), 0)}" for n in SERVICE_COLUMNS)
    console.print(
        f"{_label(interval)} {row['interval']}: {row['sent']} sent, {_fmt(row['finished_per_s'])} finished/s, "
        f"in escrow p50 {_fmt(latency.get('p50'), 0)} p99 {_fmt(latency.get('p99'), 0)} ms, "
        f"CPU {_fmt(row['cpu_ms_per_order'], 2)} ms/order, {row['in_flight']} in flight, {row['failed']} failed\n"
        f"    bytes/order: databases {_fmt(per['databases_file'], 0)} ({databases}), "
        f"Kafka {_fmt(per['kafka_tradeguard'], 0)}",
        highlight=False,
    )


def print_intervals(intervals: list[dict[str, Any]], interval: float) -> None:
    table = Table(
        title=f"Soak per {_label(interval)}: throughput, checkout -> in escrow, CPU and bytes per order "
        "(database files incl. -wal, and Kafka's tradeguard.* partitions, grown since the start / orders stored)"
    )
    for column in (
        "#", "sent", "finished/s", "p50 ms", "p99 ms", "CPU ms/order", *(f"{n} B/o" for n in SERVICE_COLUMNS),
        "DBs B/o", "Kafka B/o",
    ):  # fmt: skip
        table.add_column(column, justify="right")
    for row in intervals:
        latency, per = row["in_escrow_ms"], row["bytes_per_order"]
        table.add_row(
            str(row["interval"]),
            _fmt(row["sent"]),
            _fmt(row["finished_per_s"]),
            _fmt(latency.get("p50")),
            _fmt(latency.get("p99")),
            _fmt(row["cpu_ms_per_order"], 2),
            *(_fmt(per["databases"].get(n, {}).get("file"), 0) for n in SERVICE_COLUMNS),
            _fmt(per["databases_file"], 0),
            _fmt(per["kafka_tradeguard"], 0),
        )
    console.print(table)


def _rows(sample: Mapping[str, Any]) -> dict[tuple[str, str], int]:
    return {
        (service, table): count
        for service, figures in sample["databases"].items()
        for table, count in figures["rows"].items()
    }


def print_rows(result: dict[str, Any]) -> None:
    """Rows per table at the start, after the first and the last interval, drained, after the clock move."""
    intervals, storage = result["intervals"], result["storage"]
    columns = {
        "start": _rows(storage["baseline"]),
        "first interval": _rows(intervals[0]["storage"]),
        "last interval": _rows(intervals[-1]["storage"]),
        "drained": _rows(storage["drained"]),
        "clock moved": _rows(storage["after_clock_move"]),
    }
    checks = {(c["service"], c["table"]): c for c in result["tables"]}
    table = Table(title=f"Rows per table (clock moved {storage['clock_moved_days']:g} days after the drain)")
    for column in ("table", *columns, "kept?"):
        table.add_column(column, justify="left" if column == "table" else "right")
    keys = sorted({k for counts in columns.values() for k, v in counts.items() if v})
    for key in keys:
        check = checks.get(key)
        if check is None:
            kept = "per order" if key[1] in KEPT_PER_ORDER.get(key[0], frozenset()) else "money"
        else:
            kept = "[green]bounded[/]" if check["ok"] else "[red]GROWS[/]"
        table.add_row(".".join(key), *(_fmt(counts.get(key)) for counts in columns.values()), kept)
    console.print(table)


def print_storage(storage: dict[str, Any]) -> None:
    table = Table(
        title="Bytes per order (growth since the start / orders stored): file = on disk incl. -wal; live = pages in use"
    )
    for column in ("", *SERVICE_COLUMNS, "databases", "archives", "Kafka tradeguard.*", "Kafka all"):
        table.add_column(column, justify="right")
    for label, key in (
        ("before pruning", "bytes_per_order_before_pruning"),
        ("after the clock move", "bytes_per_order_after_pruning"),
    ):
        per = storage[key]
        for kind in ("file", "live"):
            table.add_row(
                f"{label}: {kind}",
                *(_fmt(per["databases"].get(n, {}).get(kind), 0) for n in SERVICE_COLUMNS),
                _fmt(per[f"databases_{kind}"], 0),
                _fmt(per["archives"], 0) if kind == "file" else "",
                _fmt(per["kafka_tradeguard"], 0) if kind == "file" else "",
                _fmt(per["kafka"], 0) if kind == "file" else "",
            )
    console.print(table)


def print_windows(windows: Mapping[str, Mapping[str, Any]]) -> None:
    table = Table(title="First and last window")
    for column in ("window", "seconds", "finished", "finished/s", "p50 ms", "p99 ms"):
        table.add_column(column, justify="right")
    for window in windows.values():
        table.add_row(
            window["name"],
            f"{window['start']:g}-{window['end']:g}",
            _fmt(window["finished"]),
            _fmt(window["throughput"]),
            _fmt(window["p50_ms"]),
            _fmt(window["p99_ms"]),
        )
    console.print(table)


def print_summary(result: dict[str, Any], config: SoakConfig) -> None:
    console.rule("TradeGuard soak")
    print_intervals(result["intervals"], config.interval)
    print_windows(result["windows"])
    print_rows(result)
    print_storage(result["storage"])
    orders = result["orders"]
    console.print(
        f"orders: {orders['sent']} sent, {orders['finished']} finished, {orders['failed']} failed, "
        f"{orders['unfinished']} unfinished; by plan {orders['by_plan']}",
        highlight=False,
    )
    outcome = result["verdict"]
    if outcome["passed"]:
        console.print("[bold green]SOAK PASSED[/]")
        return
    console.print("[bold red]SOAK FAILED[/]")
    for reason in outcome["reasons"]:
        console.print(f"  - {reason}", highlight=False)


# ---------------------------------------------------------------- entry point


def parse_args(argv: list[str] | None = None) -> tuple[SoakConfig, Path, str | None]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--short", action="store_true", help="CI's run: 2 minutes at 20 orders/s")
    parser.add_argument("--rate", type=float, help="orders/s offered (default 100)")
    parser.add_argument("--minutes", type=float, help="minutes of sending (default 30)")
    parser.add_argument("--interval", type=float, help="seconds per printed row (default 60)")
    parser.add_argument("--mix", help=f"flows and their weights (default {DEFAULT_MIX})")
    parser.add_argument("--accounts", type=int, help="buyers (and sellers) the orders cycle through (default 200)")
    parser.add_argument("--warmup-seconds", type=float, help="seconds of warm-up before measuring (default 20)")
    parser.add_argument("--tolerance", type=float, help="how much worse the last window may be (default 0.10)")
    parser.add_argument("--clock-move-days", type=float, help="how far the clock moves after the drain (default 40)")
    parser.add_argument("--prune-stall", type=float, help="stop waiting for the pruner after this long without change")
    parser.add_argument("--name", help="results file prefix and work folder (default soak)")
    parser.add_argument("--bootstrap-servers", help="use this running broker instead of starting one")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results", help="results directory")
    args = parser.parse_args(argv)
    config = SoakConfig.short() if args.short else SoakConfig()
    overrides: dict[str, Any] = {
        "rate": args.rate,
        "minutes": args.minutes,
        "interval": args.interval,
        "mix": args.mix,
        "accounts": args.accounts,
        "warmup_seconds": args.warmup_seconds,
        "tolerance": args.tolerance,
        "clock_move_days": args.clock_move_days,
        "prune_stall": args.prune_stall,
        "name": args.name,
    }
    config = replace(config, **{k: v for k, v in overrides.items() if v is not None})
    if config.rate <= 0 or config.minutes <= 0 or config.interval <= 0:
        parser.error("--rate, --minutes and --interval must be positive")
    return config, args.out, args.bootstrap_servers


async def main(argv: list[str] | None = None) -> int:
    config, out_dir, bootstrap = parse_args(argv)
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    results = await run_soak(config, bootstrap_servers=bootstrap, out_dir=out_dir)
    return 0 if results["verdict"]["passed"] else 1


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main()))
    except KeyboardInterrupt:
        console.print("[yellow]interrupted; everything the soak started has been stopped[/]")
        sys.exit(130)
