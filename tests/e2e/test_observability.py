"""X5 (issue 12): an order's checkout is one trace across the services. The saga's handling of the
marketplace's Checkout starts it (the marketplace sends no trace of its own); every record a
handler emits carries its span's traceparent through the outbox, so the payment, account, escrow
and notification services' spans join the same trace; log lines carry its id."""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
import pytest

from contracts import Checkout, ConfirmReceipt, FundWallet, OrderStatus
from scripts.marketplace import EventWatcher, Marketplace
from scripts.onboarding import MARKETPLACE_ID, Onboarding, Person
from scripts.stack import ServiceProcesses
from tests.support.eventually import eventually
from tests.support.orders import reached, usd

pytestmark = [pytest.mark.e2e, pytest.mark.kafka, pytest.mark.slow]


def spans(log_dir: Path) -> list[dict[str, Any]]:
    found = []
    for path in sorted(log_dir.glob("traces-*.jsonl")):
        found += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return found


def of_order(all_spans: list[dict[str, Any]], order_id: str) -> dict[str, list[dict[str, Any]]]:
    """The order's spans by trace id."""
    traces: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for span in all_spans:
        if span["attributes"].get("tradeguard.correlation_id") == order_id:
            traces[span["trace_id"]].append(span)
    return traces


async def order_in_escrow(
    market: Marketplace, watcher: EventWatcher, onboarding: Onboarding, tag: str
) -> tuple[str, str]:
    """A fresh buyer's paid order, held in escrow: (order id, buyer id)."""
    run = uuid.uuid4().hex[:8]
    buyer, order_id = Person.numbered(f"buyer-{tag}-{run}", int(run, 16) % 10**8), f"order-{tag}-{run}"
    await onboarding.buyer(buyer)
    price = usd(4200)
    await market.publish(
        FundWallet(account_id=buyer.account_id, amount=price), correlation_id=order_id, idempotency_key=run
    )
    checkout = Checkout(
        marketplace_id=MARKETPLACE_ID, order_id=order_id, buyer_id=buyer.account_id, seller_id=f"s-{run}", amount=price
    )
    await market.publish(checkout, correlation_id=order_id, idempotency_key=f"checkout-{run}")
    await watcher.wait_for(reached(order_id, OrderStatus.IN_ESCROW), timeout=60)
    return order_id, buyer.account_id


async def test_x5_an_orders_checkout_is_one_trace_across_at_least_three_services(
    stack: ServiceProcesses, market: Marketplace, watcher: EventWatcher, onboarding: Onboarding
) -> None:
    order_id, buyer_id = await order_in_escrow(market, watcher, onboarding, "tr")
    await market.publish(
        ConfirmReceipt(order_id=order_id, buyer_id=buyer_id),
        correlation_id=order_id,
        idempotency_key=f"c-{order_id}",
    )
    await watcher.wait_for(reached(order_id, OrderStatus.COMPLETED), timeout=60)

    def checkout_trace(traces: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
        return next((t for t in traces.values() if any(s["name"] == "handle Checkout" for s in t)), [])

    # The services export in the background every few seconds: wait for the spans to land.
    trace = await eventually(
        lambda: _async(checkout_trace(of_order(spans(stack.log_dir), order_id))),
        lambda t: {"saga", "payment", "account", "escrow"} <= {s["service"] for s in t},
        timeout=30,
    )
    services = {s["service"] for s in trace}
    assert {"saga", "payment", "account", "escrow"} <= services, services
    root = next(s for s in trace if s["name"] == "handle Checkout")
    assert root["parent_id"] is None  # the marketplace sent no trace: the saga starts it
    ids = {s["span_id"] for s in trace}
    assert all(s["parent_id"] in ids for s in trace if s is not root), "every other span is a child within the trace"
    capture = next(s for s in trace if s["name"] == "handle CapturePayment")
    assert next(s for s in trace if s["span_id"] == capture["parent_id"])["service"] == "saga"
    # The trace id is on the log lines written while its spans were open (the notification
    # service logs each notice it records).
    lines = [  # the JSON lines: a library may write plain text to the same file
        json.loads(line)
        for path in stack.log_dir.glob("*.log")
        for line in path.read_text().splitlines()
        if line.startswith("{")
    ]
    traced = [line for line in lines if line.get("trace_id") == root["trace_id"]]
    assert traced, "no log line carries the trace id"
    assert {line["correlation_id"] for line in traced} == {order_id}


async def _async(value: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return value


def samples(page: str, name: str) -> dict[str, float]:
    """Every sample of metric ``name`` on a Prometheus page, by its label set."""
    found = {}
    for line in page.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            series, _, value = line.rpartition(" ")
            found[series.removeprefix(name)] = float(value)
    return found


async def test_x5_each_service_exposes_its_flow_latency_and_backlog_metrics(
    stack: ServiceProcesses, market: Marketplace, watcher: EventWatcher, onboarding: Onboarding
) -> None:
    await order_in_escrow(market, watcher, onboarding, "mx")
    async with httpx.AsyncClient(timeout=10) as client:
        for url in (stack.saga_url, stack.payment_url, stack.escrow_url, stack.notification_url):
            page = (await client.get(f"{url}/metrics")).text
            assert samples(page, "tradeguard_messages_total").get('{outcome="handled"}', 0) > 0, url
            assert samples(page, "tradeguard_end_to_end_seconds_count")[""] > 0, url
            assert samples(page, "tradeguard_end_to_end_seconds_bucket")['{le="+Inf"}'] > 0, url
            # The outbox's backlog is measured (and empty once the order rests in escrow).
            assert samples(page, "tradeguard_outbox_backlog_records") == {"": 0.0}, url
            assert "tradeguard_outbox_oldest_age_seconds" in page, url
            assert samples(page, "tradeguard_consumer_lag_records"), url
