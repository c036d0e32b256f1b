"""The soak's verdict, from figures alone (no broker, no database), so tests can feed it any.

A soak fails when

* throughput (orders finished per second) in the last window is more than ``tolerance`` (10%)
  below the first window's, or the p99 of checkout -> in escrow more than ``tolerance`` above
  it; a p99 that grew by less than ``p99_slack_ms`` in absolute terms does not count (a short
  run's p99 of 20 ms moves by 2 ms from noise alone). The windows are the first and last five
  minutes of the sending, or the first and last fifth of a run shorter than ten minutes;
* a table that is not a money record (:data:`bench.storage.MONEY_TABLES`; nor the one row per
  order the retention policy keeps, :data:`bench.storage.KEPT_PER_ORDER`) holds more rows,
  once the services' clock has been moved past every retention window and the pruner has had
  its time, than it held at the end of the first interval (``slack`` rows aside): it keeps
  growing however long its rows have been kept;
* an order failed (cancelled, refused, or ended otherwise than its flow says) or did not finish.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from bench.stats import percentile
from bench.storage import kept_tables

FULL_WINDOW_SECONDS = 300.0
"""Five minutes, for runs of at least twice that."""
TOLERANCE = 0.10
P99_SLACK_MS = 5.0
ROW_SLACK = 10
"""Rows a table may hold above its first-interval count after pruning (a few messages in flight
when the first interval was read)."""


def window_seconds(run_seconds: float) -> float:
    """Five minutes for a run of ten minutes or more; else a fifth of the run."""
    return FULL_WINDOW_SECONDS if run_seconds >= 2 * FULL_WINDOW_SECONDS else run_seconds / 5


@dataclass(frozen=True, slots=True)
class Window:
    """Throughput and checkout -> in escrow latency over ``[start, end)`` (seconds since sending began)."""

    name: str
    start: float
    end: float
    finished: int
    throughput: float | None
    """Orders that reached their final status in the window, per second."""
    latencies: int
    p50_ms: float | None
    p99_ms: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure_window(
    name: str, start: float, end: float, finished_at: Iterable[float], in_escrow: Iterable[tuple[float, float]]
) -> Window:
    """``finished_at``: when each order finished; ``in_escrow``: (when it reached escrow, seconds
    it took from its checkout), all on the same clock as ``start`` and ``end``."""
    seconds = end - start
    finished = sum(start <= t < end for t in finished_at)
    latencies = [1000 * took for t, took in in_escrow if start <= t < end]
    return Window(
        name=name,
        start=round(start, 3),
        end=round(end, 3),
        finished=finished,
        throughput=round(finished / seconds, 2) if seconds > 0 else None,
        latencies=len(latencies),
        p50_ms=round(percentile(latencies, 50), 2) if latencies else None,
        p99_ms=round(percentile(latencies, 99), 2) if latencies else None,
    )


def first_and_last(
    run_seconds: float, finished_at: Sequence[float], in_escrow: Sequence[tuple[float, float]]
) -> tuple[Window, Window]:
    """The first and the last window of a run whose sending took ``[0, run_seconds)``."""
    width = window_seconds(run_seconds)
    return (
        measure_window("first", 0.0, width, finished_at, in_escrow),
        measure_window("last", run_seconds - width, run_seconds, finished_at, in_escrow),
    )


def judge_performance(
    first: Window, last: Window, *, tolerance: float = TOLERANCE, p99_slack_ms: float = P99_SLACK_MS
) -> list[str]:
    """Why the last window is worse than the first (empty: it is not)."""
    reasons: list[str] = []
    if not first.throughput:
        reasons.append("no order finished in the first window")
    elif last.throughput is None or last.throughput < first.throughput * (1 - tolerance):
        reasons.append(
            f"throughput fell from {first.throughput} to {last.throughput} orders/s "
            f"(more than {tolerance:.0%} below the first window)"
        )
    if first.p99_ms is None or last.p99_ms is None:
        reasons.append("no order reached escrow in the first or the last window")
    elif last.p99_ms > first.p99_ms * (1 + tolerance) and last.p99_ms - first.p99_ms > p99_slack_ms:
        reasons.append(
            f"in-escrow p99 rose from {first.p99_ms} to {last.p99_ms} ms "
            f"(more than {tolerance:.0%} and {p99_slack_ms:g} ms above the first window)"
        )
    return reasons


@dataclass(frozen=True, slots=True)
class TableCheck:
    """One table that must not keep growing: its rows at the end of the first interval, when the
    orders were all done (before the clock moved), and after the clock passed every window."""

    service: str
    table: str
    first: int
    before_move: int
    after_move: int
    bound: int
    expected_to_shrink: bool | None
    """The pruner names it (None: no pruner to ask)."""

    @property
    def ok(self) -> bool:
        return self.after_move <= self.bound

    @property
    def reason(self) -> str:
        return (
            f"{self.service}.{self.table} keeps growing: {self.after_move} rows once the clock passed its "
            f"retention window ({self.before_move} before, {self.first} after the first interval)"
        )

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def judge_tables(
    first: Mapping[str, Mapping[str, int]],
    before_move: Mapping[str, Mapping[str, int]],
    after_move: Mapping[str, Mapping[str, int]],
    *,
    kept: Mapping[str, frozenset[str]] | None = None,
    pruned: Mapping[str, frozenset[str]] | None = None,
    slack: int = ROW_SLACK,
) -> list[TableCheck]:
    """A check of every table of ``after_move`` but those ``kept`` (default:
    :func:`bench.storage.kept_tables`, the money records and the policy's one row per order)."""
    kept = kept_tables() if kept is None else kept
    checks: list[TableCheck] = []
    for service, tables in sorted(after_move.items()):
        for table, rows in sorted(tables.items()):
            if table in kept.get(service, frozenset()):
                continue
            at_first = first.get(service, {}).get(table, 0)
            checks.append(
                TableCheck(
                    service=service,
                    table=table,
                    first=at_first,
                    before_move=before_move.get(service, {}).get(table, 0),
                    after_move=rows,
                    bound=at_first + slack,
                    expected_to_shrink=None if pruned is None else table in pruned.get(service, frozenset()),
                )
            )
    return checks


def verdict(
    performance: Sequence[str], tables: Sequence[TableCheck], *, failed: int, unfinished: int, examples: Sequence[str]
) -> dict[str, Any]:
    """Passed, and every reason it did not."""
    reasons = list(performance)
    reasons.extend(check.reason for check in tables if not check.ok)
    if failed:
        reasons.append(f"{failed} orders failed (e.g. {'; '.join(examples[:3])})")
    if unfinished:
        reasons.append(f"{unfinished} orders did not finish")
    return {"passed": not reasons, "reasons": reasons}
