"""Issue 19, the soak run's verdict on made-up figures: it passes a flat run and fails one whose
throughput falls, whose p99 climbs, or whose non-money tables keep growing past their window."""

from __future__ import annotations

from collections import Counter

import pytest

from bench.mix import Flow, Mix, Plan
from bench.soak_verdict import (
    P99_SLACK_MS,
    Window,
    first_and_last,
    judge_performance,
    judge_tables,
    measure_window,
    verdict,
    window_seconds,
)
from bench.storage import MONEY_TABLES, DatabaseFigures, StorageSample, per_order
from contracts import OrderStatus
from contracts.disputes import DisputeResolution


def window(name: str, throughput: float, p99_ms: float) -> Window:
    return Window(name, 0, 300, int(throughput * 300), throughput, 1000, p99_ms / 2, p99_ms)


# ------------------------------------------------------------------ the windows


def test_soak_windows_are_five_minutes_of_a_long_run_and_a_fifth_of_a_short_one() -> None:
    assert window_seconds(30 * 60) == 300
    assert window_seconds(10 * 60) == 300
    assert window_seconds(2 * 60) == 24
    assert window_seconds(45) == 9


def test_soak_window_counts_what_finished_and_reached_escrow_inside_it() -> None:
    finished = [0.5, 1.0, 9.99, 10.0, 11.0]
    in_escrow = [(0.2, 0.010), (5.0, 0.020), (9.0, 0.030), (10.5, 5.0)]

    measured = measure_window("first", 0, 10, finished, in_escrow)

    assert (measured.finished, measured.throughput, measured.latencies) == (3, 0.3, 3)
    assert measured.p50_ms == 20.0
    assert measured.p99_ms == pytest.approx(29.8)


def test_soak_first_and_last_windows_cover_both_ends_of_the_sending() -> None:
    # one order a second for 100 s, each in escrow 50 ms after its checkout
    finished = [t + 0.1 for t in range(100)]
    in_escrow = [(t + 0.05, 0.05) for t in range(100)]

    first, last = first_and_last(100, finished, in_escrow)

    assert (first.start, first.end, last.start, last.end) == (0, 20, 80, 100)
    assert first.throughput == last.throughput == 1.0


# ------------------------------------------------------------------ throughput and p99


def test_soak_a_flat_run_passes() -> None:
    assert judge_performance(window("first", 100, 80), window("last", 95, 86)) == []


def test_soak_fails_when_throughput_falls_by_more_than_a_tenth() -> None:
    reasons = judge_performance(window("first", 100, 80), window("last", 89, 80))

    assert reasons == ["throughput fell from 100 to 89 orders/s (more than 10% below the first window)"]


def test_soak_fails_when_the_p99_rises_by_more_than_a_tenth() -> None:
    reasons = judge_performance(window("first", 100, 80), window("last", 100, 89))

    assert len(reasons) == 1
    assert reasons[0].startswith("in-escrow p99 rose from 80 to 89 ms")


def test_soak_a_p99_rise_within_the_absolute_slack_is_noise() -> None:
    small = 20.0
    assert judge_performance(window("first", 100, small), window("last", 100, small + P99_SLACK_MS - 0.1)) == []
    assert judge_performance(window("first", 100, small), window("last", 100, small + P99_SLACK_MS + 0.1)) != []


def test_soak_fails_when_nothing_finished_or_reached_escrow() -> None:
    empty = Window("first", 0, 24, 0, 0.0, 0, None, None)

    reasons = judge_performance(empty, window("last", 100, 80))

    assert "no order finished in the first window" in reasons
    assert "no order reached escrow in the first or the last window" in reasons


# ------------------------------------------------------------------ tables


def test_soak_tables_that_shrink_back_pass_and_money_tables_may_grow() -> None:
    first = {"saga": {"inbox": 600, "order_audit": 600, "orders": 100}, "account": {"accounts": 20}}
    drained = {"saga": {"inbox": 18000, "order_audit": 18000, "orders": 3000}, "account": {"accounts": 20}}
    pruned = {"saga": {"inbox": 3, "order_audit": 0, "orders": 3000}, "account": {"accounts": 20}}

    checks = judge_tables(first, drained, pruned, pruned={"saga": frozenset({"inbox", "order_audit"})})

    assert {(c.service, c.table) for c in checks} == {
        ("saga", "inbox"),
        ("saga", "order_audit"),
        ("account", "accounts"),
    }
    assert all(c.ok for c in checks)
    assert [c.expected_to_shrink for c in checks if c.table == "inbox"] == [True]


def test_soak_fails_naming_a_table_that_keeps_growing_after_its_window() -> None:
    first = {"notification": {"notifications": 1600, "inbox": 2600}}
    drained = {"notification": {"notifications": 43000, "inbox": 70000}}
    after = {"notification": {"notifications": 43000, "inbox": 0}}

    checks = judge_tables(first, drained, after)
    outcome = verdict([], checks, failed=0, unfinished=0, examples=[])

    assert not outcome["passed"]
    assert outcome["reasons"] == [
        (
            "notification.notifications keeps growing: 43000 rows once the clock passed its retention window "
            "(43000 before, 1600 after the first interval)"
        )
    ]


def test_soak_lets_the_read_copy_of_orders_grow_as_the_policy_keeps_it_unless_told_otherwise() -> None:
    first, drained = {"notification": {"notification_orders": 100}}, {"notification": {"notification_orders": 3000}}

    assert judge_tables(first, drained, drained) == []  # kept by the policy: one row per order
    strict = judge_tables(first, drained, drained, kept=MONEY_TABLES)
    assert [(c.table, c.ok) for c in strict] == [("notification_orders", False)]


def test_soak_a_table_may_hold_a_few_rows_more_than_after_the_first_interval() -> None:
    checks = judge_tables({"saga": {"outbox": 0}}, {"saga": {"outbox": 0}}, {"saga": {"outbox": 10}})
    assert all(c.ok for c in checks)
    checks = judge_tables({"saga": {"outbox": 0}}, {"saga": {"outbox": 0}}, {"saga": {"outbox": 11}})
    assert not any(c.ok for c in checks)


def test_soak_failed_or_unfinished_orders_fail_it() -> None:
    outcome = verdict([], [], failed=2, unfinished=1, examples=["cancelled: x", "rejected y"])

    assert outcome == {
        "passed": False,
        "reasons": ["2 orders failed (e.g. cancelled: x; rejected y)", "1 orders did not finish"],
    }
    assert verdict([], [], failed=0, unfinished=0, examples=[]) == {"passed": True, "reasons": []}


# ------------------------------------------------------------------ the mix and bytes per order


def test_soak_mix_gives_each_flow_its_exact_share_of_every_hundred_orders() -> None:
    mix = Mix()

    for block in range(3):
        flows = Counter(mix.flow_of(n) for n in range(block * 100, (block + 1) * 100))
        assert flows == {Flow.CONFIRM: 70, Flow.PARTIAL_REFUND: 10, Flow.FULL_REFUND: 10, Flow.DISPUTE: 10}
    # spread out, not in runs: no ten orders in a row are all confirmations
    firsts = [mix.flow_of(n) for n in range(100)]
    assert all(Flow.CONFIRM in firsts[i : i + 5] and set(firsts[i : i + 10]) != {Flow.CONFIRM} for i in range(90))


def test_soak_disputes_are_resolved_in_turn_and_end_as_their_resolution_says() -> None:
    mix = Mix.parse("dispute=1")
    resolutions = [mix.plan_of(n).resolution for n in range(3)]

    assert resolutions == [DisputeResolution.REFUND_IN_FULL, DisputeResolution.SPLIT, DisputeResolution.RELEASE]
    assert [mix.plan_of(n).final for n in range(3)] == [
        OrderStatus.REFUNDED,
        OrderStatus.COMPLETED,
        OrderStatus.COMPLETED,
    ]
    assert Plan(Flow.FULL_REFUND).final is OrderStatus.REFUNDED
    assert Plan(Flow.PARTIAL_REFUND).final is OrderStatus.COMPLETED


def test_soak_mix_refuses_weights_that_send_nothing() -> None:
    with pytest.raises(ValueError, match="one at least positive"):
        Mix.parse("confirm=0")
    with pytest.raises(ValueError, match="'refund'"):
        Mix.parse("refund=10")


def sample(orders: int, saga_file: int, saga_live: int, kafka: int) -> StorageSample:
    saga = DatabaseFigures(saga_file, 0, saga_live, {"orders": orders})
    return StorageSample({"saga": saga}, kafka + 1000, kafka)


def test_soak_bytes_per_order_are_the_growth_over_the_orders_stored_meanwhile() -> None:
    before, after = sample(50, 100_000, 90_000, 10_000), sample(1050, 3_100_000, 2_090_000, 5_010_000)

    per = per_order(before, after)

    assert per["orders"] == 1000
    assert per["databases"]["saga"] == {"file": 3000.0, "live": 2000.0, "archive": None}
    assert (per["databases_file"], per["databases_live"], per["kafka_tradeguard"]) == (3000.0, 2000.0, 5000.0)


def test_soak_pruning_shows_in_live_bytes_not_in_the_file() -> None:
    drained, pruned = sample(1050, 3_100_000, 2_090_000, 0), sample(1050, 3_100_000, 400_000, 0)
    start = sample(50, 100_000, 90_000, 0)

    assert per_order(start, drained)["databases_file"] == per_order(start, pruned)["databases_file"]
    assert per_order(start, pruned)["databases_live"] == 310.0
