"""The stack under test: a private Kafka broker (scripts/kafka.sh) and the five services.

Everything the bench starts is stopped by :func:`bench_stack`, also on errors and Ctrl-C.
The broker gets its own ports and data dir so it never collides with ``make run`` or the
test broker; service databases and logs go to a fresh ``.cache/bench/<name>/``. Each service
serves its metrics on its own HTTP port (``<SERVICE>_HTTP_PORT``, 19301..19305 unless told
otherwise), which :mod:`bench.metrics` scrapes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench.metrics import DEFAULT_HTTP_PORTS, service_http_env
from contracts import ALL_TOPICS
from contracts.topics import Key, Topic
from scripts.stack import FAST_PASSWORD_HASHING, ROOT, SERVICES, ServiceProcesses, sqlite_urls
from shared.broker import ensure_topics
from shared.broker_security import use_broker_credentials

KAFKA_SH = ROOT / "scripts" / "kafka.sh"
WORK_ROOT = ROOT / ".cache" / "bench"


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    """Which kafka.sh instance the bench runs (overridable through BENCH_KAFKA_* variables)."""

    port: int = int(os.environ.get("BENCH_KAFKA_PORT", "19292"))
    controller_port: int = int(os.environ.get("BENCH_KAFKA_CONTROLLER_PORT", "19293"))
    data_dir: str = os.environ.get("BENCH_KAFKA_DATA_DIR", ".cache/kafka/bench-data")

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def data_path(self) -> Path:
        path = Path(self.data_dir)
        return path if path.is_absolute() else ROOT / path

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "KAFKA_PORT": str(self.port),
            "KAFKA_CONTROLLER_PORT": str(self.controller_port),
            "KAFKA_DATA_DIR": str(self.data_path),
        }


SAMPLED_TRACES = {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.01"}
"""As a deployment traces under load: one order in a hundred, whole (OpenTelemetry's own settings).
Every span recorded, as `make run` and the tests do, costs about 13% more CPU per order and
doubles the latency at 20 orders/s here (measured: the issue 12 note)."""


def kafka_sh(command: str, config: BrokerConfig, *, check: bool = True) -> None:
    """Run ``scripts/kafka.sh <command>`` against the bench broker instance."""
    result = subprocess.run(["bash", str(KAFKA_SH), command], env=config.env(), check=False)
    if check and result.returncode != 0:
        msg = f"scripts/kafka.sh {command} failed with exit code {result.returncode}"
        raise RuntimeError(msg)


def broker_pid(config: BrokerConfig) -> int | None:
    """The broker JVM's pid, from the pid file kafka.sh writes."""
    try:
        return int((config.data_path / "kafka.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def bench_topic(name: str, partitions: int = 6) -> Topic:
    return Topic(name, partitions, Key.ORDER_ID, "bench transport measurement")


@dataclass(slots=True)
class RunningStack:
    """What a benchmark needs to know about the running stack."""

    bootstrap_servers: str
    services: ServiceProcesses
    work_dir: Path
    broker_pid: int | None
    pids: dict[str, int] = field(default_factory=dict)
    http_ports: dict[str, int] = field(default_factory=dict)
    kafka_data_dir: Path | None = None
    """The broker's data folder when the bench started it (its partitions' bytes are measured there)."""

    def check_alive(self) -> None:
        self.services.check_alive()


def service_env(log_level: str) -> dict[str, str]:
    """``<SVC>_LOG_LEVEL`` for every service."""
    return {f"{name.upper()}_LOG_LEVEL": log_level for name in SERVICES}


@asynccontextmanager
async def bench_stack(
    name: str,
    *,
    bootstrap_servers: str | None = None,
    broker: BrokerConfig | None = None,
    log_level: str = "WARNING",
    extra_env: Mapping[str, str] | None = None,
    extra_topics: Iterable[Topic] = (),
    http_ports: Mapping[str, int] | None = None,
    ready_timeout: float = 120.0,
) -> AsyncIterator[RunningStack]:
    """Start (a fresh broker unless ``bootstrap_servers`` is given,) topics and the five services.

    ``http_ports`` (default :data:`bench.metrics.DEFAULT_HTTP_PORTS`) become each service's
    ``<SERVICE>_HTTP_PORT``.

    ``extra_topics`` are created with the others, so their partition leaders are settled by the
    time the services are ready. Stops what it started when the block exits, however it exits.
    """
    broker = broker or BrokerConfig()
    own_broker = bootstrap_servers is None
    work_dir = WORK_ROOT / name
    shutil.rmtree(work_dir, ignore_errors=True)
    work_dir.mkdir(parents=True)
    services: ServiceProcesses | None = None
    ports = dict(http_ports or DEFAULT_HTTP_PORTS)
    try:
        if own_broker:
            kafka_sh("reset", broker)  # also stops a broker left behind by an aborted run
            kafka_sh("start", broker)
            use_broker_credentials(broker.data_path)
            bootstrap_servers = broker.bootstrap_servers
        assert bootstrap_servers is not None
        await ensure_topics(bootstrap_servers, (*ALL_TOPICS, *extra_topics))
        services = ServiceProcesses(
            bootstrap_servers,
            sqlite_urls(work_dir / "db"),
            work_dir / "logs",
            extra_env={
                **service_env(log_level),
                **service_http_env(ports),
                **FAST_PASSWORD_HASHING,  # hundreds of accounts registered before the run
                **SAMPLED_TRACES,
                **(extra_env or {}),
            },
        )
        services.start()
        await services.wait_ready(timeout=ready_timeout)
        stack = RunningStack(
            bootstrap_servers=bootstrap_servers,
            services=services,
            work_dir=work_dir,
            broker_pid=broker_pid(broker) if own_broker else None,
            pids={n: p.pid for n, p in services.processes.items()},
            http_ports=ports,
            kafka_data_dir=broker.data_path if own_broker else None,
        )
        yield stack
    finally:
        if services is not None:
            services.stop()
        if own_broker:
            kafka_sh("stop", broker, check=False)
