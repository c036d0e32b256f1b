"""The figures the targets are about, the targets themselves, and this run beside a baseline run.

:func:`key_figures` reads a results dict (this run's, or a baseline's latest.json from older
code: it only needs ``phases``, ``idle``, ``trace`` and ``transport``), so "before" and "now"
are computed the same way. A figure at a given rate comes from the phase offered that rate
(the dedicated ``cpu-10``/``cpu-20``/``fixed`` phases first, else e.g. a baseline's
``search-20``). The highest held rate is the highest offered rate of any phase that held
(search steps included, as the baseline's 125/s: its sustained phase did not hold).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from bench.monitor import stack_total
from scripts.stack import ROOT

DEFAULT_BASELINE = "bench/results/baseline-407f125.json"

RATE_FACTOR = 2.0  # highest held rate, times the baseline's
IN_ESCROW_P99_AT_75_MS = 35.0
IN_ESCROW_P99_AT_75_ACCEPTABLE_MS = 100.0
IN_ESCROW_P50_AT_20_MS = 15.0
CPU_MS_AT_10 = 20.0
CPU_MS_AT_20 = 15.0
CPU_MS_AT_HIGHEST = 6.0
IDLE_PERCENT_OF_ONE_CORE = 3.0
SQL_PER_MESSAGE = 1.0


# ---------------------------------------------------------------- figures


def phase_at(phases: Iterable[dict[str, Any]], rate: float, prefer: Iterable[str] = ()) -> dict[str, Any] | None:
    """The phase offered ``rate`` orders/s: one named in ``prefer`` first, the warm-up never."""
    candidates = [p for p in phases if p["name"] != "warmup" and p["offered_rate"] == rate]
    for name in prefer:
        for phase in candidates:
            if phase["name"] == name:
                return phase
    return candidates[0] if candidates else None


def highest_held(phases: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
    """The phase that held the highest rate (the sustained phase if it held that rate too)."""
    held = [p for p in phases if p["name"] != "warmup" and p["backlog"]["held"]]
    if not held:
        return None
    top = max(p["offered_rate"] for p in held)
    at_top = [p for p in held if p["offered_rate"] == top]
    return next((p for p in at_top if p["name"] == "sustained"), at_top[-1])


def cpu_ms_per_order(phase: dict[str, Any] | None) -> float | None:
    """CPU ms per completed order of the services and Kafka, the bench driver left out."""
    return stack_total(phase.get("cpu_ms_per_completed_order")) if phase else None


def _latency(phase: dict[str, Any] | None, which: str, pct: str) -> float | None:
    value: float | None = phase["latency"][which].get(pct) if phase else None
    return value


def _combined(phase: dict[str, Any] | None, key: str) -> Any:
    if not phase:
        return None
    return ((phase.get("service_metrics") or {}).get("all") or {}).get(key)


def key_figures(results: Mapping[str, Any]) -> dict[str, Any]:
    """The figures the targets and the before/after comparison use."""
    phases = results.get("phases") or []
    at10 = phase_at(phases, 10, ("cpu-10",))
    at20 = phase_at(phases, 20, ("cpu-20",))
    at75 = phase_at(phases, 75, ("fixed",))
    top = highest_held(phases)
    idle = results.get("idle") or {}
    trace = results.get("trace") or {}
    hop = ((results.get("transport") or {}).get("ping_pong") or {}).get("hop_ms") or {}
    return {
        "highest_held_rate": top["offered_rate"] if top else None,
        "highest_held_phase": top["name"] if top else None,
        "phase_at_10": at10["name"] if at10 else None,
        "phase_at_20": at20["name"] if at20 else None,
        "phase_at_75": at75["name"] if at75 else None,
        "in_escrow_p50_ms_at_20": _latency(at20, "to_in_escrow_ms", "p50"),
        "in_escrow_p99_ms_at_20": _latency(at20, "to_in_escrow_ms", "p99"),
        "in_escrow_p50_ms_at_75": _latency(at75, "to_in_escrow_ms", "p50"),
        "in_escrow_p99_ms_at_75": _latency(at75, "to_in_escrow_ms", "p99"),
        "completed_p50_ms_at_75": _latency(at75, "to_completed_ms", "p50"),
        "completed_p99_ms_at_75": _latency(at75, "to_completed_ms", "p99"),
        "in_escrow_p99_ms_at_highest_held": _latency(top, "to_in_escrow_ms", "p99"),
        "cpu_ms_per_order_at_10": cpu_ms_per_order(at10),
        "cpu_ms_per_order_at_20": cpu_ms_per_order(at20),
        "cpu_ms_per_order_at_75": cpu_ms_per_order(at75),
        "cpu_ms_per_order_at_highest_held": cpu_ms_per_order(top),
        "idle_stack_percent_of_one_core": idle.get("total_percent_of_one_core"),
        "idle_seconds": idle.get("seconds"),
        "idle_kafka_measured": idle.get("kafka_measured"),
        "sql_statements_per_message_at_highest_held": _combined(top, "sql_statements_per_message"),
        "sql_statements_per_message_at_20": _combined(at20, "sql_statements_per_message"),
        "hop_stage_sum_ms_at_20": _combined(at20, "hop_mean_ms_sum_of_stages"),
        "hop_largest_stage_at_20": _combined(at20, "largest_stage"),
        "hop_stage_sum_ms_at_75": _combined(at75, "hop_mean_ms_sum_of_stages"),
        "hop_largest_stage_at_75": _combined(at75, "largest_stage"),
        "trace_completed_p50_ms": trace.get("checkout_to_completed_ms_p50"),
        "hop_p50_ms": hop.get("p50"),
    }


# ---------------------------------------------------------------- baseline


def resolve(path: str | Path) -> Path:
    path = Path(path)
    return path if path.is_absolute() else ROOT / path


def load_baseline(path: str | None) -> tuple[dict[str, Any] | None, str | None]:
    """The baseline run's results, or None and why not."""
    if not path:
        return None, "no baseline given"
    try:
        data: dict[str, Any] = json.loads(resolve(path).read_text())
    except (OSError, ValueError) as error:
        return None, f"baseline {path} not read: {error}"
    return data, None


def baseline_figures(baseline: Mapping[str, Any]) -> dict[str, Any]:
    """The baseline's own summary figures, with :func:`key_figures` computed from its phases."""
    stored = (baseline.get("summary") or {}).get("figures") or {}
    computed = key_figures(baseline)
    if computed["highest_held_rate"] is None:  # no phases stored: trust its summary
        computed["highest_held_rate"] = stored.get("max_sustainable_rate_search")
    return {**stored, **{k: v for k, v in computed.items() if v is not None or k not in stored}}


# ---------------------------------------------------------------- targets


def fmt_value(value: Any, unit: str = "") -> str:
    """A figure for a sentence: whole numbers without decimals, 1 decimal from 10 up, else 2."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if not isinstance(value, float):
        text = str(value)
    elif value.is_integer():
        text = f"{int(value):,}"
    else:
        text = f"{value:,.1f}" if abs(value) >= 10 else f"{value:.2f}"
    return f"{text} {unit}".rstrip() if unit else text


def before_now(before: Any, now: Any, unit: str = "") -> str:
    """``"881.9 ms before -> 23.4 ms now"`` (or just the now part without a baseline figure)."""
    if before is None:
        return f"{fmt_value(now, unit)} now (no baseline figure)"
    return f"{fmt_value(before, unit)} before -> {fmt_value(now, unit)} now"


def _at_most(value: float | None, limit: float) -> bool | None:
    return value <= limit if value is not None else None


def _missing(value: Any, why: str) -> str:
    return "" if value is not None else f"; {why}"


def targets(now: Mapping[str, Any], before: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """Each target: met (True / False / None when not measured), its figure now and before."""
    was = before or {}
    rows: list[dict[str, Any]] = []

    def add(target: str, key: str, met: bool | None, unit: str, detail: str = "", **extra: Any) -> None:
        rows.append(
            {
                "target": target,
                "key": key,
                "met": met,
                "now": now.get(key),
                "before": was.get(key),
                "unit": unit,
                "detail": before_now(was.get(key), now.get(key), unit) + detail,
                **extra,
            }
        )

    rate, base_rate = now.get("highest_held_rate"), was.get("highest_held_rate")
    goal = RATE_FACTOR * base_rate if base_rate else None
    add(
        f"highest rate held >= {RATE_FACTOR:g}x the baseline's"
        + (f" ({RATE_FACTOR:g} x {base_rate:g} = {goal:g} orders/s)" if goal else ""),
        "highest_held_rate",
        (rate >= goal) if rate is not None and goal is not None else None,
        "orders/s",
        f" (held in {now.get('highest_held_phase') or '-'})"
        + ("; no baseline rate" if goal is None else "")
        + _missing(rate, "no phase held"),
        goal=goal,
    )
    p99 = now.get("in_escrow_p99_ms_at_75")
    level = None
    if p99 is not None:
        level = (
            "target"
            if p99 <= IN_ESCROW_P99_AT_75_MS
            else "least acceptable"
            if p99 <= IN_ESCROW_P99_AT_75_ACCEPTABLE_MS
            else "neither"
        )
    add(
        f"checkout->in_escrow p99 at 75/s <= {IN_ESCROW_P99_AT_75_MS:g} ms "
        f"(least acceptable {IN_ESCROW_P99_AT_75_ACCEPTABLE_MS:g} ms)",
        "in_escrow_p99_ms_at_75",
        _at_most(p99, IN_ESCROW_P99_AT_75_MS),
        "ms",
        {
            "target": f"; within {IN_ESCROW_P99_AT_75_MS:g} ms",
            "least acceptable": f"; over {IN_ESCROW_P99_AT_75_MS:g} ms, within the least acceptable "
            f"{IN_ESCROW_P99_AT_75_ACCEPTABLE_MS:g} ms",
            "neither": f"; over even the least acceptable {IN_ESCROW_P99_AT_75_ACCEPTABLE_MS:g} ms",
            None: "; no 75/s phase",
        }[level],
        acceptable=_at_most(p99, IN_ESCROW_P99_AT_75_ACCEPTABLE_MS),
        level=level,
    )
    p50 = now.get("in_escrow_p50_ms_at_20")
    add(
        f"checkout->in_escrow p50 at 20/s <= {IN_ESCROW_P50_AT_20_MS:g} ms",
        "in_escrow_p50_ms_at_20",
        _at_most(p50, IN_ESCROW_P50_AT_20_MS),
        "ms",
        _missing(p50, "no 20/s phase"),
    )
    for key, limit, label in (
        ("cpu_ms_per_order_at_10", CPU_MS_AT_10, "at 10/s"),
        ("cpu_ms_per_order_at_20", CPU_MS_AT_20, "at 20/s"),
        ("cpu_ms_per_order_at_highest_held", CPU_MS_AT_HIGHEST, "at the highest held rate"),
    ):
        value = now.get(key)
        detail = _missing(value, "not measured")
        if key.endswith("highest_held"):
            detail += f" (at {fmt_value(rate)}/s now, {fmt_value(base_rate)}/s before)"
        add(
            f"CPU per order {label} (services + Kafka) <= {limit:g} ms",
            key,
            _at_most(value, limit),
            "ms",
            detail,
        )
    idle = now.get("idle_stack_percent_of_one_core")
    add(
        f"idle stack CPU, no orders (services + Kafka) <= {IDLE_PERCENT_OF_ONE_CORE:g}% of one core",
        "idle_stack_percent_of_one_core",
        _at_most(idle, IDLE_PERCENT_OF_ONE_CORE),
        "% of one core",
        (f"; over {fmt_value(now.get('idle_seconds'))} s" if now.get("idle_seconds") is not None else "")
        + _missing(idle, "not measured")
        + ("; Kafka not measured (external broker)" if now.get("idle_kafka_measured") is False else ""),
    )
    sql = now.get("sql_statements_per_message_at_highest_held")
    add(
        f"SQL statements per message consumed at the highest held rate <= {SQL_PER_MESSAGE:g}",
        "sql_statements_per_message_at_highest_held",
        _at_most(sql, SQL_PER_MESSAGE),
        "",
        _missing(sql, "n/a (no metrics)"),
    )
    return rows


# What the comparison shows, in order: (label, figure key, unit).
COMPARED: tuple[tuple[str, str, str], ...] = (
    ("highest rate held", "highest_held_rate", "orders/s"),
    ("sustained phase offered", "sustained_offered_rate", "orders/s"),
    ("sustained phase held", "sustained_held", ""),
    ("sustained phase completed (steady)", "sustained_completed_per_s", "orders/s"),
    ("75/s in_escrow p50", "in_escrow_p50_ms_at_75", "ms"),
    ("75/s in_escrow p99", "in_escrow_p99_ms_at_75", "ms"),
    ("75/s completed p50", "completed_p50_ms_at_75", "ms"),
    ("75/s completed p99", "completed_p99_ms_at_75", "ms"),
    ("20/s in_escrow p50", "in_escrow_p50_ms_at_20", "ms"),
    ("20/s in_escrow p99", "in_escrow_p99_ms_at_20", "ms"),
    ("highest held rate: in_escrow p99", "in_escrow_p99_ms_at_highest_held", "ms"),
    ("CPU per order at 10/s", "cpu_ms_per_order_at_10", "ms"),
    ("CPU per order at 20/s", "cpu_ms_per_order_at_20", "ms"),
    ("CPU per order at 75/s", "cpu_ms_per_order_at_75", "ms"),
    ("CPU per order at the highest held rate", "cpu_ms_per_order_at_highest_held", "ms"),
    ("idle stack CPU", "idle_stack_percent_of_one_core", "% of one core"),
    ("SQL statements per message, highest held rate", "sql_statements_per_message_at_highest_held", ""),
    ("SQL statements per message, 20/s", "sql_statements_per_message_at_20", ""),
    ("one hop, sum of stage means, 20/s", "hop_stage_sum_ms_at_20", "ms"),
    ("one hop, sum of stage means, 75/s", "hop_stage_sum_ms_at_75", "ms"),
    ("one order at a time: checkout->completed p50", "trace_completed_p50_ms", "ms"),
    ("raw Kafka hop p50", "hop_p50_ms", "ms"),
    ("raw produce", "raw_produce_msgs_per_s", "msgs/s"),
    ("messages per order", "messages_per_order", ""),
)


def comparison(now: Mapping[str, Any], before: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """Every compared figure now and in the baseline (None where a run lacks it)."""
    was = before or {}
    return [
        {
            "figure": label,
            "key": key,
            "unit": unit,
            "before": was.get(key),
            "now": now.get(key),
            "text": f"{label}: {before_now(was.get(key), now.get(key), unit)}",
        }
        for label, key, unit in COMPARED
    ]
