"""Present a benchmark's results: a rich summary on the terminal, JSON files and a PNG chart."""

from __future__ import annotations

import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.metrics import GIVE_UP_AFTER, STAGES
from bench.monitor import stack_total
from bench.orders import OrderTimes
from bench.targets import fmt_value
from scripts.stack import ROOT

console = Console() if sys.stdout.isatty() else Console(width=150)


# ---------------------------------------------------------------- machine info


def machine_info() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gb": _memory_gb(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "kafka_version": kafka_version(),
        "aiokafka_version": _package_version("aiokafka"),
        "faststream_version": _package_version("faststream"),
        "code": code_version(),
    }


def code_version() -> dict[str, Any]:
    """HEAD and the files that differ from it (others edit services/ and shared/ concurrently)."""

    def git(*args: str) -> str | None:
        try:
            result = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return result.stdout.strip()

    status = git("status", "--porcelain", "--", "shared", "services", "contracts", "scripts")
    return {
        "git_head": git("log", "-1", "--format=%h %ad %s", "--date=iso"),
        "uncommitted": status.splitlines() if status else [],
    }


def _cpu_model() -> str | None:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or None
    match = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    return match.group(1).strip() if match else None


def _memory_gb() -> float | None:
    try:
        import psutil

        total: int = psutil.virtual_memory().total
        return round(total / 2**30, 1)
    except ImportError:
        return None


def kafka_version() -> str | None:
    pom = ROOT / "scripts" / "kafka" / "pom.xml"
    match = re.search(r"<kafka.version>(.+?)</kafka.version>", pom.read_text()) if pom.exists() else None
    return match.group(1) if match else None


def _package_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


# ---------------------------------------------------------------- files


def write_results(results: dict[str, Any], orders: Iterable[OrderTimes], out_dir: Path, prefix: str) -> list[Path]:
    """``<prefix>.json`` + a timestamped copy, and ``<prefix>.png``; returns the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    latest = out_dir / f"{prefix}.json"
    latest.write_text(json.dumps(results, indent=2, default=str) + "\n")
    stamped = out_dir / f"{prefix.replace('latest', 'run')}-{stamp}.json"
    shutil.copyfile(latest, stamped)
    written = [latest, stamped]
    chart = out_dir / f"{prefix}.png"
    try:
        plot(results, list(orders), chart)
        written.append(chart)
    except Exception as error:  # a missing chart must not lose the numbers
        console.print(f"[yellow]chart not written: {error!r}[/]")
    return written


def plot(results: dict[str, Any], orders: list[OrderTimes], path: Path) -> None:
    import matplotlib as mpl

    mpl.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(14, 9), constrained_layout=True)
    grid = fig.add_gridspec(2, 2)
    _plot_histogram(fig.add_subplot(grid[0, 0]), orders, results)
    _plot_cdf(fig.add_subplot(grid[0, 1]), orders, results)
    _plot_timeline(fig.add_subplot(grid[1, :]), results)
    fig.suptitle(f"TradeGuard bench {results['meta'].get('started_at', '')} ({results['meta'].get('mode')})")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _latencies(orders: list[OrderTimes], phase: str) -> tuple[list[float], list[float]]:
    mine = [o for o in orders if o.phase == phase]
    escrow = [1000 * (o.in_escrow - o.sent) for o in mine if o.in_escrow is not None]
    completed = [1000 * (o.completed - o.sent) for o in mine if o.completed is not None]
    return escrow, completed


def _headline_phases(results: dict[str, Any]) -> list[str]:
    return [p["name"] for p in results.get("phases", []) if p["name"] in ("fixed", "sustained")]


def _plot_histogram(ax: Any, orders: list[OrderTimes], results: dict[str, Any]) -> None:
    phase = "fixed"
    escrow, completed = _latencies(orders, phase)
    if escrow or completed:
        top = max(escrow + completed)
        bins = [i * top / 60 for i in range(61)]
        ax.hist(escrow, bins=bins, alpha=0.6, label="checkout -> in_escrow")
        ax.hist(completed, bins=bins, alpha=0.6, label="checkout -> completed")
    rate = next((p["offered_rate"] for p in results.get("phases", []) if p["name"] == phase), None)
    ax.set_title(f"Latency histogram, fixed phase ({rate} orders/s offered)")
    ax.set_xlabel("ms")
    ax.set_ylabel("orders")
    ax.legend()


def _plot_cdf(ax: Any, orders: list[OrderTimes], results: dict[str, Any]) -> None:
    for phase in _headline_phases(results):
        escrow, completed = _latencies(orders, phase)
        for values, label in ((escrow, "in_escrow"), (completed, "completed")):
            if values:
                ordered = sorted(values)
                ax.plot(ordered, [(i + 1) / len(ordered) for i in range(len(ordered))], label=f"{phase}: {label}")
    ax.set_xscale("log")
    ax.set_title("Latency CDF from checkout")
    ax.set_xlabel("ms (log)")
    ax.set_ylabel("fraction of orders")
    ax.grid(visible=True, which="both", alpha=0.3)
    ax.legend()


def _plot_timeline(ax: Any, results: dict[str, Any]) -> None:
    samples = results.get("timeline", [])
    ts = [s["t"] for s in samples]
    ax.plot(ts, [s["completed_per_s"] for s in samples], label="completed/s", color="tab:green")
    for phase in results.get("phases", []):
        start, end = phase["window"]
        ax.axvspan(start, end, alpha=0.08, color="tab:blue")
        ax.hlines(phase["offered_rate"], start, end, colors="tab:blue", linestyles="dashed")
        ax.text(start, phase["offered_rate"], f" {phase['name']}", fontsize=7, va="bottom")
    idle = results.get("idle")
    if idle:
        start, end = idle["window"]
        ax.axvspan(start, end, alpha=0.15, color="tab:gray")
        ax.text(start, 0, f" idle {idle['total_percent_of_one_core']}% core", fontsize=7, va="bottom")
    ax.set_xlabel("seconds since the order driver started")
    ax.set_ylabel("orders/s (dashed: offered)")
    twin = ax.twinx()
    twin.plot(ts, [s["in_flight"] for s in samples], label="in flight", color="tab:red", alpha=0.7)
    twin.set_ylabel("orders in flight")
    ax.set_title("Throughput and backlog over time")
    lines, labels = ax.get_legend_handles_labels()
    lines2, labels2 = twin.get_legend_handles_labels()
    ax.legend(lines + lines2, labels + labels2, loc="upper left")


# ---------------------------------------------------------------- terminal


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def print_summary(results: dict[str, Any]) -> None:
    console.rule("TradeGuard benchmark")
    meta = results["meta"]
    console.print(
        f"{meta['machine']['cpu_count']} CPUs ({meta['machine']['cpu_model']}), Python {meta['machine']['python']}, "
        f"Kafka {meta['machine']['kafka_version']}, mode {meta['mode']}; stage seconds {meta.get('stage_seconds')}"
    )
    code = meta["machine"].get("code", {})
    console.print(f"code: {code.get('git_head')}; uncommitted: {code.get('uncommitted') or 'none'}")
    _print_transport(results.get("transport", {}))
    _print_trace(results.get("trace"))
    phases = results.get("phases", [])
    summary = results.get("summary", {})
    figures = summary.get("figures", {})
    by_name = {p["name"]: p for p in phases}
    _print_phases(phases)
    _print_cpu(phases)
    _print_idle(results.get("idle"))
    _print_cpu_per_order(phases)
    _print_storage(results.get("storage"), figures)
    _print_sql(
        [
            by_name[n]
            for n in dict.fromkeys((figures.get("phase_at_20"), figures.get("highest_held_phase")))
            if n in by_name
        ]
    )
    for name in dict.fromkeys((figures.get("phase_at_20"), figures.get("phase_at_75") or "fixed")):
        if name in by_name:
            _print_hop_budget(by_name[name])
    _print_headline(summary)
    _print_comparison(summary)
    _print_targets(summary)


def _print_transport(transport: dict[str, Any]) -> None:
    if not transport:
        return
    table = Table(title="Transport ceiling (raw aiokafka, idempotent, acks=all, linger 2 ms)")
    for column in ("measure", "value"):
        table.add_column(column)
    pp = transport["ping_pong"]
    table.add_row("ping-pong round trips", str(pp["count"]))
    table.add_row(
        "round trip p50 / p99 ms",
        f"{_fmt(pp['round_trip_ms'].get('p50'), 2)} / {_fmt(pp['round_trip_ms'].get('p99'), 2)}",
    )
    table.add_row(
        "hop (= round trip / 2) p50 / p99 ms",
        f"{_fmt(pp['hop_ms'].get('p50'), 2)} / {_fmt(pp['hop_ms'].get('p99'), 2)}",
    )
    table.add_row(
        "first hop measured one-way p50 / p99 ms",
        f"{_fmt(pp['first_hop_one_way_ms'].get('p50'), 2)} / {_fmt(pp['first_hop_one_way_ms'].get('p99'), 2)}",
    )
    produce, consume = transport["produce"], transport["consume"]
    table.add_row(
        f"raw produce ({produce['message_bytes']} B records)",
        f"{_fmt(produce['msgs_per_s'], 0)} msgs/s ({produce['count']} records)",
    )
    table.add_row("raw consume", f"{_fmt(consume['msgs_per_s'], 0)} msgs/s ({consume['count']} records)")
    console.print(table)


def _print_trace(traced: dict[str, Any] | None) -> None:
    if not traced:
        return
    table = Table(
        title=f"Per-hop breakdown of {traced['orders']} orders sent one at a time "
        f"(checkout -> completed p50 {_fmt(traced['checkout_to_completed_ms_p50'])} ms)"
    )
    for column in ("message", "producer", "handling p50/p95 ms", "publish p50/p95 ms"):
        table.add_column(column, justify="right")
    for hop in traced["hops"]:
        table.add_row(
            hop["message"],
            hop["producer"],
            f"{_fmt(hop['handling_ms_p50'])}/{_fmt(hop['handling_ms_p95'])}",
            f"{_fmt(hop['publish_ms_p50'])}/{_fmt(hop['publish_ms_p95'])}",
        )
    console.print(table)
    console.print(f"handling: {traced['definitions']['handling_ms']}; publish: {traced['definitions']['publish_ms']}")


def _print_phases(phases: list[dict[str, Any]]) -> None:
    table = Table(title="Order phases (latency from Checkout sent; completed includes the bench's ConfirmReceipt)")
    for column in (
        "phase", "offered/s", "sent", "done/s steady | sending | drain", "in_escrow p50/p95/p99 ms",
        "completed p50/p95/p99 ms", "in-flight slope", "drain s", "msgs/order", "CPU ms/order (stack)", "SQL/msg", "held",
    ):  # fmt: skip
        table.add_column(column, justify="right")
    for p in phases:
        esc, comp, backlog = p["latency"]["to_in_escrow_ms"], p["latency"]["to_completed_ms"], p["backlog"]
        table.add_row(
            p["name"],
            _fmt(p["offered_rate"], 0),
            str(p["sent"]),
            f"{_fmt(p['completed_per_s_steady'])} | {_fmt(p['completed_per_s_while_sending'])} | "
            f"{_fmt(p['completed_per_s_during_drain'])}",
            f"{_fmt(esc.get('p50'), 0)}/{_fmt(esc.get('p95'), 0)}/{_fmt(esc.get('p99'), 0)}",
            f"{_fmt(comp.get('p50'), 0)}/{_fmt(comp.get('p95'), 0)}/{_fmt(comp.get('p99'), 0)}",
            f"{_fmt(backlog['in_flight_slope'], 2)} (<= {_fmt(backlog['slope_limit'], 1)})",
            _fmt(p["drain_seconds"], 2),
            _fmt(p["messages"]["per_completed_order"], 2),
            _fmt(stack_total(p["cpu_ms_per_completed_order"])),
            _fmt(((p.get("service_metrics") or {}).get("all") or {}).get("sql_statements_per_message"), 2),
            "[green]yes[/]" if backlog["held"] else f"[red]no[/] {', '.join(backlog['reasons'])}",
        )
    console.print(table)


def _print_cpu(phases: list[dict[str, Any]]) -> None:
    table = Table(title="CPU, % of one core, averaged over each phase's sending window")
    names = sorted({n for p in phases for n in p["cpu"]["percent_of_one_core"]})
    for column in ("phase", *names, "machine busy cores", "others' cores", "steal %"):
        table.add_column(column, justify="right")
    for p in phases:
        cpu = p["cpu"]
        table.add_row(
            p["name"],
            *(_fmt(cpu["percent_of_one_core"].get(n)) for n in names),
            _fmt(cpu["machine_busy_cores"], 2),
            _fmt(cpu["other_processes_cores"], 2),
            _fmt(cpu.get("machine_steal_percent")),
        )
    console.print(table)


NO_METRICS = "n/a (no metrics)"


def _print_idle(idle: dict[str, Any] | None) -> None:
    if not idle:
        return
    shares = idle["percent_of_one_core"]
    table = Table(
        title=f"Idle stack: no orders for {_fmt(idle['seconds'])} s after the warm-up, CPU % of one core "
        f"(bench driver: {_fmt(idle.get('bench_percent_of_one_core'), 2)}, not counted)"
    )
    for column in (*shares, "total (services + Kafka)", "machine busy cores", "others' cores"):
        table.add_column(column, justify="right")
    table.add_row(
        *(_fmt(v, 2) for v in shares.values()),
        _fmt(idle["total_percent_of_one_core"], 2),
        _fmt(idle.get("machine_busy_cores"), 2),
        _fmt(idle.get("other_processes_cores"), 2),
    )
    console.print(table)
    if not idle.get("kafka_measured"):
        console.print("[yellow]Kafka's CPU was not measured (an external broker): the total is the services' only[/]")
    metrics = idle.get("service_metrics") or {}
    if metrics.get("available"):
        statements = {n: f.get("sql_statements") for n, f in metrics["services"].items()}
        console.print(f"SQL statements while idle: {statements}")


def _print_cpu_per_order(phases: list[dict[str, Any]]) -> None:
    """CPU ms per completed order, per process, from the first Checkout until all was consumed."""
    measured = [p for p in phases if p.get("cpu_ms_per_completed_order")]
    if not measured:
        return
    names = sorted(
        {n for p in measured for n in p["cpu_ms_per_completed_order"] if n not in ("bench", "all_measured", "stack")}
    )
    table = Table(title="CPU ms per completed order (sending + drain); the stack = services + Kafka, bench excluded")
    for column in ("phase", "offered/s", *names, "stack", "bench driver"):
        table.add_column(column, justify="right")
    for p in measured:
        cpu = p["cpu_ms_per_completed_order"]
        table.add_row(
            p["name"],
            _fmt(p["offered_rate"], 0),
            *(_fmt(cpu.get(n), 2) for n in names),
            f"[bold]{_fmt(stack_total(cpu), 2)}[/]",
            _fmt(cpu.get("bench"), 2),
        )
    console.print(table)


STORAGE_SERVICES = ("account", "payment", "escrow", "notification", "saga")


def _print_storage(storage: dict[str, Any] | None, figures: dict[str, Any]) -> None:
    """Bytes per order, each database and Kafka, before and (when the services prune) after pruning."""
    if not storage:
        return
    cpu = figures.get("cpu_ms_per_order_at_highest_held")
    table = Table(
        title=f"Storage per order ({storage.get('measured')}; CPU per order at the highest held rate: {_fmt(cpu, 2)} ms): "
        "growth since the buyers were funded / orders stored; file = on disk incl. -wal, live = pages in use"
    )
    for column in ("", *STORAGE_SERVICES, "databases", "archives", "Kafka tradeguard.*", "orders"):
        table.add_column(column, justify="right")
    for label, key in (
        ("before pruning", "bytes_per_order_before_pruning"),
        ("after pruning", "bytes_per_order_after_pruning"),
    ):
        per = storage.get(key)
        if not per:
            continue
        for kind in ("file", "live"):
            table.add_row(
                f"{label}: {kind}",
                *(_fmt(per["databases"].get(n, {}).get(kind), 0) for n in STORAGE_SERVICES),
                f"[bold]{_fmt(per[f'databases_{kind}'], 0)}[/]",
                _fmt(per.get("archives"), 0) if kind == "file" else "",
                _fmt(per["kafka_tradeguard"], 0) if kind == "file" else "",
                _fmt(per["orders"]) if kind == "file" else "",
            )
    console.print(table)
    if storage.get("still_growing"):
        console.print(
            f"[yellow]not pruned once the clock passed every window: {', '.join(storage['still_growing'])}[/]"
        )


def _metrics_or_none(phase: dict[str, Any]) -> dict[str, Any] | None:
    metrics = phase.get("service_metrics") or {}
    return metrics if metrics.get("available") else None


def _print_sql(phases: list[dict[str, Any]]) -> None:
    """SQL statements per message consumed, per service, at the given phases."""
    if not phases:
        return
    table = Table(title="SQL statements per message consumed (service metrics, phase + drain)")
    table.add_column("service")
    for p in phases:
        label = f"{p['name']} ({_fmt(p['offered_rate'], 0)}/s)"
        for column in ("messages", "statements", "per message", "records/batch"):
            table.add_column(f"{label}: {column}" if column == "messages" else column, justify="right")
    services = sorted({n for p in phases for n in ((_metrics_or_none(p) or {}).get("services") or {})})
    for name in (*services, "all"):
        cells: list[str] = []
        for p in phases:
            metrics = _metrics_or_none(p)
            figures = (metrics or {}).get("all") if name == "all" else ((metrics or {}).get("services") or {}).get(name)
            if not figures:
                cells += [NO_METRICS, "", "", ""]
                continue
            cells += [
                _fmt(figures.get("messages_consumed")),
                _fmt(figures.get("sql_statements")),
                _fmt(figures.get("sql_statements_per_message"), 2),
                _fmt(figures.get("records_per_batch_mean"), 1),
            ]
        table.add_row(f"[bold]{name}[/]" if name == "all" else name, *cells)
    console.print(table)
    _print_metrics_errors(phases)


def _print_metrics_errors(phases: list[dict[str, Any]]) -> None:
    """Which services gave no metrics, once per distinct error."""
    failed: dict[str, set[str]] = {}
    for p in phases:
        for name, error in ((p.get("service_metrics") or {}).get("errors") or {}).items():
            failed.setdefault(error.removeprefix(f"gave up after {GIVE_UP_AFTER} failed scrapes: "), set()).add(name)
    for error, names in failed.items():
        console.print(f"[yellow]no metrics from {', '.join(sorted(names))}: {error}[/]")


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:,.0f}"


def _stage_cell(stage: dict[str, Any] | None) -> str:
    if not stage or stage.get("mean_ms") is None:
        return "-"
    return f"{_ms(stage['mean_ms'])} ({_ms(stage.get('p50_ms'))}/{_ms(stage.get('p99_ms'))})"


def _print_hop_budget(phase: dict[str, Any]) -> None:
    """Where one hop's time goes at this phase's rate: stage means (p50/p99), per service and averaged."""
    title = f"Latency budget of one hop at {_fmt(phase['offered_rate'], 0)}/s ({phase['name']}), ms: mean (p50/p99)"
    metrics = _metrics_or_none(phase)
    combined = (metrics or {}).get("all") or {}
    if not metrics or not combined.get("stages"):
        console.print(f"{title}: {NO_METRICS}")
        return
    services = metrics["services"]
    table = Table(title=title)
    for column in ("stage", *services, "avg over services"):
        table.add_column(column, justify="right")
    largest = combined.get("largest_stage")
    for stage in STAGES:
        avg = combined["stages"].get(stage)
        cells = [_stage_cell(f["stages"].get(stage)) for f in services.values()]
        mark = "[bold]" if stage == largest else ""
        table.add_row(
            f"{mark}{stage}[/]" if mark else stage, *cells, f"{mark}{_stage_cell(avg)}[/]" if mark else _stage_cell(avg)
        )
    sums = [
        _ms(sum(s["mean_ms"] for s in f["stages"].values() if s.get("mean_ms") is not None)) if f["stages"] else "-"
        for f in services.values()
    ]
    table.add_row("sum of means", *sums, _ms(combined.get("hop_mean_ms_sum_of_stages")))
    console.print(table)
    share = combined.get("largest_stage_share")
    console.print(
        f"largest slice at {_fmt(phase['offered_rate'], 0)}/s: [bold]{largest}[/] "
        f"({_fmt(combined['stages'][largest]['mean_ms'], 2)} ms mean, "
        f"{_fmt(100 * share if share is not None else None, 0)}% of the sum of stage means)"
        if largest
        else "largest slice: -"
    )


def _print_headline(summary: dict[str, Any]) -> None:
    if not summary:
        return
    table = Table(title="Headline figures")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in summary.get("figures", {}).items():
        table.add_row(key, _fmt(value, 2))
    console.print(table)


def _print_comparison(summary: dict[str, Any]) -> None:
    rows = summary.get("comparison")
    if not rows:
        return
    baseline = summary.get("baseline") or {}
    head = (baseline.get("git_head") or "-").split()[0]
    title = f"Before -> now (before: {baseline.get('path')}, code {head}, run {baseline.get('started_at') or '-'})"
    if baseline.get("error"):
        console.print(f"[yellow]{baseline['error']}[/]")
    table = Table(title=title)
    for column in ("figure", "before", "now"):
        table.add_column(column, justify="right" if column != "figure" else "left")
    for row in rows:
        unit = f" {row['unit']}" if row["unit"] else ""
        table.add_row(row["figure"], _value(row["before"], unit), _value(row["now"], unit))
    console.print(table)


def _value(value: Any, unit: str) -> str:
    return "-" if value is None else fmt_value(value, unit.strip())


def _print_targets(summary: dict[str, Any]) -> None:
    rows = summary.get("targets")
    if not rows:
        return
    table = Table(title="Targets")
    table.add_column("target")
    table.add_column("verdict")
    table.add_column("before -> now")
    for target in rows:
        verdict = {True: "[green]MET[/]", False: "[red]NOT MET[/]", None: "[yellow]n/a[/]"}[target["met"]]
        if target.get("level") == "least acceptable":
            verdict = "[yellow]NOT MET (least acceptable met)[/]"
        table.add_row(target["target"], verdict, target["detail"])
    console.print(table)
    for target in rows:  # plain lines too, for logs read without the table
        verdict = {True: "met", False: "NOT met", None: "n/a"}[target["met"]]
        console.print(f"  {verdict}: {target['target']}: {target['detail']}", highlight=False)
