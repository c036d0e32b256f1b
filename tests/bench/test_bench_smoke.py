"""The benchmark itself, run small: it must keep working as the system changes (no timing asserted)."""

from __future__ import annotations

import pytest

from bench.run import run_smoke

pytestmark = [pytest.mark.e2e, pytest.mark.kafka, pytest.mark.slow]


async def test_bench_smoke_run_measures_transport_and_completes_orders(kafka_bootstrap: str) -> None:
    results = await run_smoke(kafka_bootstrap)

    figures = results["summary"]["figures"]
    assert figures["hop_p50_ms"] > 0
    assert figures["raw_produce_msgs_per_s"] > 0
    assert figures["messages_per_order"] == 17  # 12 commands/events and 5 status changes per order
    assert results["send_errors"] == 0
    assert results["rejections"] == []
    assert {t["target"] for t in results["summary"]["targets"]} >= {
        ">= 150 orders/s sustained 120 s without backlog growth"
    }
    completed = sum(phase.get("completed", 0) for phase in results["phases"])
    assert completed > 0
