"""What a running service tells the outside: Prometheus metrics and health/readiness over HTTP.

One service per process, so the metrics live in the process's default registry. The HTTP
endpoint (``<SERVICE>_HTTP_PORT``) serves ``/health`` (the process and its event loop answer),
``/ready`` (it holds partitions and its database answers: 503 otherwise) and ``/metrics``.
It runs on the service's own event loop, which is never blocked for long (see shared.db), so
a service waiting for its database still answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.logging import get_logger

log = get_logger(__name__)

_STAGE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """The counters and histograms every service keeps (names in the README)."""

    def __init__(self) -> None:
        self.messages = Counter(
            "tradeguard_messages", "Records consumed, by outcome.", ["outcome"]
        )  # handled, duplicate, rejected, dead_lettered, skipped, conflict_retry
        self.batches = Counter("tradeguard_batches", "Batches applied.")
        self.signatures_refused = Counter(
            "tradeguard_signatures_refused",
            "Records dead-lettered because their signature proves no allowed producer made them, "
            "or because they were replayed late, by reason.",
            ["reason"],
        )  # unsigned, malformed, unknown_signer, unknown_key, bad_signature, not_allowed (shared.signing); stale
        self.statements = Counter("tradeguard_sql_statements", "SQL statements run on the service's database.")
        self.system_faults = Counter(
            "tradeguard_system_faults", "Batches retried because the database or broker failed."
        )
        self.batch_records = Histogram(
            "tradeguard_batch_records", "Records per consumed batch.", buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500)
        )
        self.stages = Histogram(
            "tradeguard_hop_stage_seconds", "Time spent in each stage of one hop.", ["stage"], buckets=_STAGE_BUCKETS
        )
        self.end_to_end = Histogram(
            "tradeguard_end_to_end_seconds",
            "From a record's broker timestamp to its effects committed here, per record applied.",
            buckets=_STAGE_BUCKETS,
        )
        self.outbox_backlog = Gauge(
            "tradeguard_outbox_backlog_records",
            "Records committed to the outbox and not yet acknowledged by the broker.",
        )
        self.outbox_oldest_age = Gauge(
            "tradeguard_outbox_oldest_age_seconds", "How long the oldest record of the outbox backlog has waited."
        )
        self.consumer_lag = Gauge(
            "tradeguard_consumer_lag_records", "Records on a partition not yet read, by topic.", ["topic"]
        )
        self.retention_rows = Counter(
            "tradeguard_retention_rows",
            "Rows the retention pruner took out of the database, by table and action (deleted, archived).",
            ["table", "action"],
        )
        self.retention_pass_seconds = Gauge(
            "tradeguard_retention_last_pass_seconds", "How long the retention pruner's last whole pass took."
        )
        self._stage_children: dict[str, Any] = {}

    def stage(self, name: str, seconds: float) -> None:
        child = self._stage_children.get(name)
        if child is None:
            child = self._stage_children[name] = self.stages.labels(name)
        child.observe(seconds)

    def count_statements(self, engine: AsyncEngine) -> None:
        """Count every statement the engine runs (an executemany counts once)."""

        @event.listens_for(engine.sync_engine, "before_cursor_execute")
        def _count(*_: object) -> None:
            self.statements.inc()


METRICS = Metrics()


ReadRoute = Callable[[Mapping[str, str]], Awaitable[tuple[int, Any]]]
"""A read API endpoint: the query's parameters in, an HTTP status and a JSON-able body out."""

_STATUS_LINES = {200: "200 OK", 400: "400 Bad Request", 404: "404 Not Found", 500: "500 Internal Server Error"}


class HealthServer:
    """A minimal HTTP/1.0 endpoint on the service's loop: /health, /ready, /metrics, and the
    service's read API (GET routes answering JSON, e.g. the payment history)."""

    def __init__(
        self,
        port: int,
        ready: Callable[[], bool],
        host: str = "127.0.0.1",
        routes: Mapping[str, ReadRoute] | None = None,
    ) -> None:
        self._host, self._port, self._ready = host, port, ready
        self._routes = dict(routes or {})
        self._server: asyncio.Server | None = None
        self.port = port

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self._host, self._port)
        self.port = self._server.sockets[0].getsockname()[1]  # the one bound when 0 was asked for
        log.info("http endpoint listening", host=self._host, port=self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), timeout=5)
            target = request.split(b" ")[1].decode(errors="replace") if request.count(b" ") >= 2 else ""
            path, _, query = target.partition("?")
            if path in self._routes:
                status, content_type, body = await self._read(path, query)
            else:
                status, content_type, body = self._answer(path)
            head = f"HTTP/1.0 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
            writer.write(head.encode() + body)
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _read(self, path: str, query: str) -> tuple[str, str, bytes]:
        parameters = {key: values[-1] for key, values in urllib.parse.parse_qs(query).items()}
        try:
            code, body = await self._routes[path](parameters)
        except Exception as error:  # a bug in a read route must not take the endpoint down
            log.exception("read route failed", path=path, error=repr(error))
            code, body = 500, {"error": "the read failed; see the service's log"}
        return _STATUS_LINES.get(code, f"{code} Status"), "application/json", json.dumps(body).encode()

    def _answer(self, path: str) -> tuple[str, str, bytes]:
        if path == "/health":
            return "200 OK", "text/plain", b"ok\n"
        if path == "/ready":
            return (
                ("200 OK", "text/plain", b"ready\n")
                if self._ready()
                else ("503 Service Unavailable", "text/plain", b"not ready\n")
            )
        if path == "/metrics":
            return "200 OK", CONTENT_TYPE_LATEST, generate_latest()
        return "404 Not Found", "text/plain", b"not found\n"
