"""Issue 19, the soak run made very short: mixed orders through the whole stack for 40 s, figures
every 10 s, the clock moved past every retention window at the end, and a verdict with its reasons.

The figures are not judged here (the machine is shared; bench.soak_verdict's rules have their unit
tests): what is checked is that every interval has its row of figures, every order of every flow
finished, and the verdict is the one its own figures give."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.soak import SoakConfig, run_soak
from bench.soak_verdict import Window, judge_performance
from bench.storage import kept_tables
from scripts.stack import SERVICES

# CI runs `make soak-short` itself; this test of the soak's own figures is in make test-long.
pytestmark = [pytest.mark.e2e, pytest.mark.kafka, pytest.mark.slow, pytest.mark.long]

TINY = SoakConfig(
    name="soak-test",
    rate=10.0,
    minutes=40 / 60,
    interval=10.0,
    accounts=10,
    warmup_rate=5.0,
    warmup_seconds=3.0,
    drain_wait=60.0,
    prune_poll=1.0,
    prune_stall=8.0,
    prune_wait=60.0,
    pruner_every=2.0,
)


@pytest.mark.timeout(400)
async def test_soak_a_short_run_gives_a_row_per_interval_and_a_verdict(kafka_bootstrap: str, tmp_path: Path) -> None:
    results = await run_soak(TINY, bootstrap_servers=kafka_bootstrap, out_dir=tmp_path, work_name="soak-test")

    # one row per interval, each with every figure the soak prints
    rows = results["intervals"]
    assert [row["interval"] for row in rows] == [1, 2, 3, 4]
    for row in rows:
        assert row["sent"] > 0
        assert row["finished_per_s"] > 0
        assert row["in_escrow_ms"]["p50"] > 0
        assert row["in_escrow_ms"]["p99"] >= row["in_escrow_ms"]["p50"]
        assert row["cpu_ms_per_order"] > 0
        assert set(row["bytes_per_order"]["databases"]) == set(SERVICES)
        assert row["bytes_per_order"]["databases_file"] is not None
        assert row["bytes_per_order"]["kafka_tradeguard"] is not None  # the broker's data folder was found
        assert {"orders", "inbox", "order_audit"} <= set(row["storage"]["databases"]["saga"]["rows"])
    # every order of every flow finished as its flow says
    orders = results["orders"]
    assert orders["sent"] == 400
    assert (orders["failed"], orders["unfinished"], orders["send_errors"]) == (0, 0, 0), orders["failure_examples"]
    assert set(orders["by_plan"]) == {
        "confirm",
        "partial_refund",
        "full_refund",
        "dispute:refund_in_full",
        "dispute:split",
        "dispute:release",
    }
    # the tables checked after the clock move are every table but the money records (and the
    # policy's one row per order)
    checked = {(c["service"], c["table"]) for c in results["tables"]}
    assert {("saga", "inbox"), ("saga", "order_audit"), ("notification", "notifications")} <= checked
    assert ("saga", "orders") not in checked
    assert not checked & {(s, t) for s, tables in kept_tables().items() for t in tables}
    # the verdict is the one its own figures give, reasons and all
    windows = results["windows"]
    assert windows["first"]["end"] == pytest.approx(windows["last"]["end"] - windows["last"]["start"]) == 8.0
    first, last = Window(**windows["first"]), Window(**windows["last"])
    performance = judge_performance(first, last, tolerance=TINY.tolerance, p99_slack_ms=TINY.p99_slack_ms)
    grows = [c for c in results["tables"] if not c["ok"]]
    assert results["verdict"]["passed"] is (not performance and not grows)
    assert len(results["verdict"]["reasons"]) == len(performance) + len(grows)
    # written where asked
    assert (tmp_path / "soak-test-latest.json").is_file()
