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

from bench.orders import OrderTimes
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
    _print_phases(results.get("phases", []))
    _print_cpu(results.get("phases", []))
    _print_headline(results.get("summary", {}))


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
        "completed p50/p95/p99 ms", "in-flight slope", "drain s", "msgs/order", "CPU ms/order", "held",
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
            _fmt((p["cpu_ms_per_completed_order"] or {}).get("all_measured")),
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


def _print_headline(summary: dict[str, Any]) -> None:
    if not summary:
        return
    table = Table(title="Headline figures and targets")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in summary.get("figures", {}).items():
        table.add_row(key, _fmt(value, 2))
    for target in summary.get("targets", []):
        verdict = {True: "[green]MET[/]", False: "[red]NOT MET[/]", None: "[yellow]n/a[/]"}[target["met"]]
        table.add_row(f"target: {target['target']}", f"{verdict} ({target['detail']})")
    console.print(table)
