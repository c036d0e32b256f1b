"""The bench's scraping of service metrics and its targets, without a broker or services."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, start_http_server

from bench.metrics import (
    GIVE_UP_AFTER,
    MetricsScraper,
    Scrape,
    bucket_quantile,
    delta,
    free_ports,
    parse_exposition,
    phase_metrics,
    service_http_env,
)
from bench.targets import DEFAULT_BASELINE, baseline_figures, key_figures, resolve, targets

STAGE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class ServiceMetrics:
    """The metrics a service exposes, named as bench.metrics expects them, in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.messages = Counter("tradeguard_messages", "m", ["outcome"], registry=self.registry)
        self.batches = Counter("tradeguard_batches", "b", registry=self.registry)
        self.statements = Counter("tradeguard_sql_statements", "s", registry=self.registry)
        self.records = Histogram("tradeguard_batch_records", "r", buckets=(1, 10, 100), registry=self.registry)
        self.stages = Histogram(
            "tradeguard_hop_stage_seconds", "h", ["stage"], buckets=STAGE_BUCKETS, registry=self.registry
        )

    def batch(self, records: int, statements: int, *, load: float, store: float, skipped: int = 0) -> None:
        self.messages.labels("handled").inc(records - skipped)
        if skipped:
            self.messages.labels("skipped").inc(skipped)
        self.batches.inc()
        self.records.observe(records)
        self.statements.inc(statements)
        self.stages.labels("load").observe(load)
        self.stages.labels("store").observe(store)
        for _ in range(records):
            self.stages.labels("fetch_wait").observe(0.002)

    def text(self) -> str:
        return generate_latest(self.registry).decode()


def test_exposition_is_parsed_without_created_samples() -> None:
    metrics = ServiceMetrics()
    metrics.batch(4, 3, load=0.001, store=0.003)

    samples = parse_exposition(metrics.text())

    assert samples["tradeguard_messages_total", (("outcome", "handled"),)] == 4
    assert samples["tradeguard_sql_statements_total", ()] == 3
    assert samples["tradeguard_hop_stage_seconds_count", (("stage", "load"),)] == 1
    assert not [name for name, _ in samples if name.endswith("_created")]


def test_phase_figures_are_deltas_between_two_scrapes() -> None:
    metrics = ServiceMetrics()
    metrics.batch(10, 50, load=0.2, store=0.2)  # before the phase: must not count
    before = Scrape(parse_exposition(metrics.text()))
    for _ in range(10):
        metrics.batch(8, 4, load=0.0004, store=0.004, skipped=2)
    after = Scrape(parse_exposition(metrics.text()))

    result = phase_metrics({"saga": before, "account": before}, {"saga": after, "account": after})

    assert result["available"]
    assert result["errors"] == {}
    saga = result["services"]["saga"]
    assert saga["messages"] == {"handled": 60, "skipped": 20}
    assert saga["messages_consumed"] == 80
    assert saga["sql_statements"] == 40
    assert saga["sql_statements_per_message"] == 0.5
    assert saga["batches"] == 10
    assert saga["records_per_batch_mean"] == 8
    store = saga["stages"]["store"]
    assert store["count"] == 10
    assert store["mean_ms"] == pytest.approx(4.0)
    assert 2.5 <= store["p50_ms"] <= 5.0  # the bucket holding every observation
    assert 0.25 <= saga["stages"]["load"]["p99_ms"] <= 0.5
    assert saga["stages"]["fetch_wait"]["count"] == 80
    combined = result["all"]
    assert combined["messages_consumed"] == 160
    assert combined["sql_statements_per_message"] == 0.5
    assert combined["largest_stage"] == "store"
    assert combined["hop_mean_ms_sum_of_stages"] == pytest.approx(0.4 + 4.0 + 2.0)
    assert combined["stages"]["store"]["services"] == 2


def test_a_service_without_metrics_is_reported_not_counted() -> None:
    metrics = ServiceMetrics()
    metrics.batch(2, 2, load=0.001, store=0.001)
    up = Scrape(parse_exposition(metrics.text()))
    down = Scrape(None, "ConnectionRefusedError: [Errno 111] Connection refused")

    partial = phase_metrics({"saga": up, "escrow": down}, {"saga": up, "escrow": down})
    nothing = phase_metrics({"saga": down}, {"saga": down})

    assert partial["available"]
    assert set(partial["services"]) == {"saga"}
    assert "Connection refused" in partial["errors"]["escrow"]
    assert partial["all"]["messages_consumed"] == 0
    assert partial["all"]["sql_statements_per_message"] is None  # no messages in between
    assert nothing == {"available": False, "services": {}, "errors": {"saga": down.error}, "all": None}


def test_counter_reset_counts_from_zero() -> None:
    key = ("tradeguard_sql_statements_total", ())
    assert delta({key: 100.0}, {key: 7.0}) == {key: 7.0}
    assert delta({key: 100.0}, {key: 107.0}) == {key: 7.0}


def test_bucket_quantile_interpolates_like_promql() -> None:
    buckets = [(0.001, 0.0), (0.002, 10.0), (0.004, 20.0), (math.inf, 20.0)]
    assert bucket_quantile(buckets, 0.5) == pytest.approx(0.002)
    assert bucket_quantile(buckets, 0.25) == pytest.approx(0.0015)
    assert bucket_quantile(buckets, 0.99) == pytest.approx(0.002 + 0.002 * 9.8 / 10)
    assert bucket_quantile([(0.001, 5.0), (math.inf, 10.0)], 0.99) == 0.001  # in +Inf: the highest bound
    assert bucket_quantile([(0.001, 0.0), (math.inf, 0.0)], 0.5) is None


@pytest.fixture
def served() -> Iterator[tuple[ServiceMetrics, int]]:
    metrics = ServiceMetrics()
    port = free_ports(["one"])["one"]
    server, thread = start_http_server(port, addr="127.0.0.1", registry=metrics.registry)
    yield metrics, port
    server.shutdown()
    server.server_close()
    thread.join(5)


async def test_scraper_reads_a_live_endpoint_and_gives_up_on_a_dead_one(served: tuple[ServiceMetrics, int]) -> None:
    metrics, port = served
    dead = free_ports(["dead"])["dead"]
    scraper = MetricsScraper({"saga": port, "escrow": dead}, timeout=1.0)

    before = await scraper.scrape()
    metrics.batch(5, 5, load=0.001, store=0.002)
    after = await scraper.scrape()
    result = phase_metrics(before, after)

    assert result["services"]["saga"]["messages_consumed"] == 5
    assert result["services"]["saga"]["sql_statements_per_message"] == 1
    assert "refused" in result["errors"]["escrow"].lower()
    for _ in range(GIVE_UP_AFTER):
        await scraper.scrape()
    assert (await scraper.scrape_one("escrow")).error.startswith("gave up")  # type: ignore[union-attr]
    assert (await scraper.scrape_one("saga")).samples


def test_http_ports_become_service_env() -> None:
    assert service_http_env({"account": 19301, "saga": 19305}) == {
        "ACCOUNT_HTTP_PORT": "19301",
        "SAGA_HTTP_PORT": "19305",
    }


def test_baseline_figures_come_from_its_phases() -> None:
    baseline = json.loads(resolve(DEFAULT_BASELINE).read_text())

    figures = baseline_figures(baseline)

    assert figures["highest_held_rate"] == 125  # search-125 held; the sustained 125/s did not
    assert figures["phase_at_10"] == "search-10"
    assert figures["phase_at_75"] == "fixed"
    assert figures["in_escrow_p99_ms_at_75"] == 881.88
    assert figures["cpu_ms_per_order_at_10"] == pytest.approx(141.25 - 7.08)  # the bench driver left out
    assert figures["idle_stack_percent_of_one_core"] is None
    assert key_figures({})["highest_held_rate"] is None


def test_targets_say_met_not_met_and_least_acceptable() -> None:
    before = {"highest_held_rate": 125, "in_escrow_p99_ms_at_75": 881.88}
    now = {
        "highest_held_rate": 300.0,
        "highest_held_phase": "search-300",
        "in_escrow_p99_ms_at_75": 50.0,
        "in_escrow_p50_ms_at_20": 9.0,
        "cpu_ms_per_order_at_10": 25.0,
        "idle_stack_percent_of_one_core": 2.5,
    }

    rows = {row["key"]: row for row in targets(now, before)}

    assert rows["highest_held_rate"]["met"] is True
    assert rows["highest_held_rate"]["goal"] == 250
    p99 = rows["in_escrow_p99_ms_at_75"]
    assert (p99["met"], p99["acceptable"], p99["level"]) == (False, True, "least acceptable")
    assert "881.9 ms before -> 50 ms now" in p99["detail"]
    assert rows["in_escrow_p50_ms_at_20"]["met"] is True
    assert rows["cpu_ms_per_order_at_10"]["met"] is False
    assert rows["cpu_ms_per_order_at_20"]["met"] is None
    assert rows["idle_stack_percent_of_one_core"]["met"] is True
    assert rows["sql_statements_per_message_at_highest_held"]["met"] is None
    assert targets(now, None)[0]["met"] is None  # no baseline: nothing to double
