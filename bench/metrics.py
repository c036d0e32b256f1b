"""Each service's own Prometheus metrics, scraped before and after a phase.

Every service process serves ``/metrics`` on 127.0.0.1 at ``<SERVICE>_HTTP_PORT`` (the bench
passes 19301..19305, see :data:`DEFAULT_HTTP_PORTS`). The bench reads, per service:

* ``tradeguard_messages_total{outcome}``: messages consumed = the sum over all outcomes
  (handled, duplicate, rejected, dead_lettered, skipped; an outcome ending in ``_retry``
  counts another try of a message already counted, so it is left out of the sum);
* ``tradeguard_batches_total`` and ``tradeguard_batch_records`` (records per batch);
* ``tradeguard_sql_statements_total``: every statement on the service's database;
* ``tradeguard_hop_stage_seconds{stage}``: where one hop's time goes (:data:`STAGES`).

A phase's figures are the deltas between two scrapes. A service that does not answer
(no metrics endpoint yet, connection refused, timeout) is recorded with its error and
its figures are None; the bench prints them as "n/a (no metrics)" and carries on.
Parsing and the delta arithmetic are plain functions, so tests feed them exposition text.
"""

from __future__ import annotations

import asyncio
import math
import os
import socket
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from scripts.stack import SERVICES

HTTP_PORT_BASE = int(os.environ.get("BENCH_HTTP_PORT_BASE", "19301"))
DEFAULT_HTTP_PORTS: dict[str, int] = {name: HTTP_PORT_BASE + i for i, name in enumerate(SERVICES)}

MESSAGES = "tradeguard_messages_total"
BATCHES = "tradeguard_batches_total"
SQL_STATEMENTS = "tradeguard_sql_statements_total"
HOP_STAGE = "tradeguard_hop_stage_seconds"
BATCH_RECORDS = "tradeguard_batch_records"
# In the order a hop goes through them; fetch_wait is observed per record, the rest per batch.
STAGES: tuple[str, ...] = ("fetch_wait", "decode", "load", "handle", "store", "handover", "publish")
OUTCOMES: tuple[str, ...] = ("handled", "duplicate", "rejected", "dead_lettered", "skipped")
RETRY_SUFFIX = "_retry"  # an outcome such as conflict_retry counts a second try, not another message
GIVE_UP_AFTER = 3  # consecutive failed scrapes of one service before the bench stops asking it

Labels = tuple[tuple[str, str], ...]
SampleKey = tuple[str, Labels]
Samples = dict[SampleKey, float]


def service_http_env(ports: Mapping[str, int]) -> dict[str, str]:
    """``<SVC>_HTTP_PORT`` for every service."""
    return {f"{name.upper()}_HTTP_PORT": str(port) for name, port in ports.items()}


def free_ports(names: Iterable[str] = SERVICES) -> dict[str, int]:
    """A currently free TCP port on 127.0.0.1 for each name (for runs beside a running bench)."""
    sockets: list[socket.socket] = []
    try:
        for _ in names:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return {name: sock.getsockname()[1] for name, sock in zip(names, sockets, strict=True)}
    finally:
        for sock in sockets:
            sock.close()


# ---------------------------------------------------------------- parsing


def parse_exposition(text: str) -> Samples:
    """Every sample of a Prometheus text exposition, keyed by (sample name, sorted labels).

    ``*_created`` samples (prometheus_client's creation timestamps) are left out.
    """
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            samples[sample.name, tuple(sorted(sample.labels.items()))] = float(sample.value)
    return samples


def delta(before: Samples, after: Samples) -> Samples:
    """after - before per sample; a sample that went down (a restarted process) counts from 0."""
    out: Samples = {}
    for key, value in after.items():
        previous = before.get(key, 0.0)
        out[key] = value - previous if value >= previous else value
    return out


def total(samples: Samples, name: str, **labels: str) -> float | None:
    """Sum of the samples called ``name`` whose labels include ``labels``; None if there are none."""
    wanted = set(labels.items())
    values = [v for (n, ls), v in samples.items() if n == name and wanted <= set(ls)]
    return sum(values) if values else None


def by_label(samples: Samples, name: str, label: str) -> dict[str, float]:
    """Samples called ``name`` summed per value of ``label``."""
    out: dict[str, float] = {}
    for (n, labels), value in samples.items():
        if n != name:
            continue
        key = dict(labels).get(label)
        if key is not None:
            out[key] = out.get(key, 0.0) + value
    return out


def histogram_buckets(samples: Samples, name: str, **labels: str) -> list[tuple[float, float]]:
    """(upper bound, cumulative count) of a histogram's buckets, ascending (``+Inf`` last)."""
    wanted = set(labels.items())
    buckets: dict[float, float] = {}
    for (n, ls), value in samples.items():
        if n != f"{name}_bucket" or not wanted <= set(ls):
            continue
        le = dict(ls).get("le")
        if le is not None:
            bound = math.inf if le in ("+Inf", "Inf", "inf") else float(le)
            buckets[bound] = buckets.get(bound, 0.0) + value
    return sorted(buckets.items())


def bucket_quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """The q-quantile estimated like PromQL's ``histogram_quantile``: linear within a bucket.

    A quantile that falls into the ``+Inf`` bucket is reported as the highest finite bound.
    None without observations.
    """
    if not buckets or buckets[-1][1] <= 0:
        return None
    count = buckets[-1][1]
    rank = q * count
    lower_bound, lower_count = 0.0, 0.0
    for bound, cumulative in buckets:
        if cumulative >= rank and cumulative > lower_count:
            if math.isinf(bound):
                return lower_bound
            if bound <= 0:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (cumulative - lower_count)
        lower_bound, lower_count = (bound if not math.isinf(bound) else lower_bound), cumulative
    return lower_bound


def stage_summary(samples: Samples, stage: str) -> dict[str, float | None] | None:
    """Observations, mean and p50/p99 (ms) of one hop stage from histogram deltas; None if none."""
    count = total(samples, f"{HOP_STAGE}_count", stage=stage)
    seconds = total(samples, f"{HOP_STAGE}_sum", stage=stage)
    if not count or seconds is None:
        return None
    buckets = histogram_buckets(samples, HOP_STAGE, stage=stage)
    p50, p99 = bucket_quantile(buckets, 0.5), bucket_quantile(buckets, 0.99)
    return {
        "count": float(round(count)),
        "mean_ms": round(1000 * seconds / count, 3),
        "p50_ms": round(1000 * p50, 3) if p50 is not None else None,
        "p99_ms": round(1000 * p99, 3) if p99 is not None else None,
    }


def _ratio(numerator: float | None, denominator: float | None, digits: int = 3) -> float | None:
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, digits)


def service_figures(d: Samples) -> dict[str, Any]:
    """One service's figures over a phase, from the delta of two scrapes."""
    outcomes = by_label(d, MESSAGES, "outcome")
    first_tries = [v for outcome, v in outcomes.items() if not outcome.endswith(RETRY_SUFFIX)]
    consumed = sum(first_tries) if outcomes else total(d, MESSAGES)
    statements = total(d, SQL_STATEMENTS)
    batches = total(d, BATCHES)
    stages = {stage: s for stage in STAGES if (s := stage_summary(d, stage)) is not None}
    return {
        "messages": {k: round(v) for k, v in sorted(outcomes.items())},
        "messages_consumed": round(consumed) if consumed is not None else None,
        "batches": round(batches) if batches is not None else None,
        "records_per_batch_mean": _ratio(
            total(d, f"{BATCH_RECORDS}_sum"), total(d, f"{BATCH_RECORDS}_count"), digits=2
        ),
        "sql_statements": round(statements) if statements is not None else None,
        "sql_statements_per_message": _ratio(statements, consumed),
        "stages": stages,
    }


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 3) if values else None


def combine(services: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    """All services together: statements per message over every message consumed, and each
    hop stage's mean / p50 / p99 averaged over the services that observed it."""
    consumed = [f["messages_consumed"] for f in services.values() if f["messages_consumed"] is not None]
    counted = [f for f in services.values() if f["messages_consumed"] is not None and f["sql_statements"] is not None]
    statements = sum(f["sql_statements"] for f in counted) if counted else None
    messages = sum(f["messages_consumed"] for f in counted) if counted else None
    per_service = [f["sql_statements_per_message"] for f in counted if f["sql_statements_per_message"] is not None]
    stages: dict[str, dict[str, float | None]] = {}
    for stage in STAGES:
        observed = [f["stages"][stage] for f in services.values() if stage in f["stages"]]
        if observed:
            stages[stage] = {
                key: _mean([s[key] for s in observed if s.get(key) is not None])
                for key in ("mean_ms", "p50_ms", "p99_ms")
            } | {"services": len(observed)}
    means = {stage: s["mean_ms"] for stage, s in stages.items() if s["mean_ms"] is not None}
    largest = max(means, key=lambda stage: means[stage]) if means else None
    hop_total = round(sum(means.values()), 3) if means else None
    return {
        "messages_consumed": sum(consumed) if consumed else None,
        "sql_statements": statements,
        "sql_statements_per_message": _ratio(statements, messages),
        "sql_statements_per_message_mean_over_services": _mean(per_service),
        "stages": stages,
        "hop_mean_ms_sum_of_stages": hop_total,
        "largest_stage": largest,
        "largest_stage_share": round(means[largest] / hop_total, 3) if largest and hop_total else None,
    }


# ---------------------------------------------------------------- scraping


@dataclass(frozen=True, slots=True)
class Scrape:
    """One service's samples at one moment, or why there are none."""

    samples: Samples | None
    error: str | None = None


def phase_metrics(before: Mapping[str, Scrape], after: Mapping[str, Scrape]) -> dict[str, Any]:
    """Per-service figures and their combination between two rounds of scrapes."""
    services: dict[str, dict[str, Any]] = {}
    errors: dict[str, str] = {}
    for name in after:
        start, end = before.get(name), after[name]
        if start is None or start.samples is None or end.samples is None:
            errors[name] = (end.error or (start.error if start else None)) or "not scraped"
            continue
        services[name] = service_figures(delta(start.samples, end.samples))
    return {
        "available": bool(services),
        "services": services,
        "errors": errors,
        "all": combine(services) if services else None,
    }


def _get(url: str, timeout: float) -> str:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via an http_proxy
    with opener.open(url, timeout=timeout) as response:  # a fixed http://127.0.0.1 URL
        body: bytes = response.read()
    return body.decode()


@dataclass(slots=True)
class MetricsScraper:
    """Scrapes every service's ``/metrics`` at once; stops asking a service after repeated failures."""

    ports: Mapping[str, int]
    timeout: float = 2.0
    host: str = "127.0.0.1"
    failures: dict[str, int] = field(default_factory=dict)
    last_error: dict[str, str] = field(default_factory=dict)

    async def scrape_one(self, name: str) -> Scrape:
        if self.failures.get(name, 0) >= GIVE_UP_AFTER:
            return Scrape(None, f"gave up after {GIVE_UP_AFTER} failed scrapes: {self.last_error.get(name)}")
        url = f"http://{self.host}:{self.ports[name]}/metrics"
        try:
            async with asyncio.timeout(self.timeout + 1):
                text = await asyncio.to_thread(_get, url, self.timeout)
            samples = parse_exposition(text)
        except (OSError, TimeoutError, urllib.error.URLError, ValueError) as error:
            self.failures[name] = self.failures.get(name, 0) + 1
            self.last_error[name] = _describe(error)
            return Scrape(None, self.last_error[name])
        self.failures[name] = 0
        return Scrape(samples)

    async def scrape(self) -> dict[str, Scrape]:
        names = list(self.ports)
        results = await asyncio.gather(*(self.scrape_one(n) for n in names))
        return dict(zip(names, results, strict=True))


def _describe(error: BaseException) -> str:
    if isinstance(error, urllib.error.URLError) and not isinstance(error, urllib.error.HTTPError):
        return f"{type(error.reason).__name__}: {error.reason}"
    return f"{type(error).__name__}: {error}"
