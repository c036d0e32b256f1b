"""The benchmark itself, run small: it must keep working as the system changes (no timing asserted)."""

from __future__ import annotations

import pytest

from bench.run import run_smoke
from scripts.stack import SERVICES

pytestmark = [pytest.mark.e2e, pytest.mark.kafka, pytest.mark.slow, pytest.mark.long]  # make test-long


async def test_bench_smoke_run_measures_transport_and_completes_orders(kafka_bootstrap: str) -> None:
    results = await run_smoke(kafka_bootstrap)

    figures = results["summary"]["figures"]
    assert figures["hop_p50_ms"] > 0
    assert figures["raw_produce_msgs_per_s"] > 0
    assert figures["messages_per_order"] == 17  # 12 commands/events and 5 status changes per order
    assert results["send_errors"] == 0
    assert results["rejections"] == []
    completed = sum(phase.get("completed", 0) for phase in results["phases"])
    assert completed > 0

    # idle CPU per process (an external broker: Kafka's own CPU is not measured)
    idle = results["idle"]
    assert set(idle["percent_of_one_core"]) == set(SERVICES)
    assert idle["total_percent_of_one_core"] == figures["idle_stack_percent_of_one_core"] >= 0
    # the CPU-per-order phases, the bench driver excluded
    names = [phase["name"] for phase in results["phases"]]
    assert {"cpu-10", "cpu-20", "fixed", "sustained"} <= set(names)
    assert figures["cpu_ms_per_order_at_10"] > 0
    assert figures["cpu_ms_per_order_at_20"] > 0
    # service metrics: figures when the services serve them, errors when they do not
    for phase in results["phases"]:
        metrics = phase["service_metrics"]
        assert set(metrics["services"]) | set(metrics["errors"]) == set(SERVICES)
        assert metrics["available"] == bool(metrics["services"])
    # storage per order (issue 19): each database and Kafka, after the pruner had its turn
    storage = results["storage"]
    assert storage["measured"] == figures["storage_measured"] == "after pruning"
    assert set(storage["bytes_per_order"]["databases"]) == set(SERVICES)
    assert figures["db_bytes_per_order"] is not None
    assert figures["kafka_bytes_per_order"] is not None
    assert (
        storage["bytes_per_order"]["orders"]
        == results["storage"]["before_pruning"]["orders"] - storage["baseline"]["orders"]
        > 0
    )
    # every target has a verdict slot, and the baseline was read
    assert results["summary"]["baseline"]["error"] is None
    keys = {t["key"] for t in results["summary"]["targets"]}
    assert keys == {
        "highest_held_rate",
        "in_escrow_p99_ms_at_75",
        "in_escrow_p50_ms_at_20",
        "cpu_ms_per_order_at_10",
        "cpu_ms_per_order_at_20",
        "cpu_ms_per_order_at_highest_held",
        "idle_stack_percent_of_one_core",
        "sql_statements_per_message_at_highest_held",
    }
    assert all(t["met"] in (True, False, None) for t in results["summary"]["targets"])
    before = {row["key"]: row["before"] for row in results["summary"]["comparison"]}
    assert before["highest_held_rate"] == 125
