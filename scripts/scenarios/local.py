"""A local stack for `make scenarios`: Kafka from scripts/kafka.sh and the services as processes,
started and stopped the way `make demo` does (the pieces are scripts.devstack's).

SIGINT or SIGTERM (to this process or its whole group) at any moment stops every service and
simulator and the broker this run started (one running before is left alone), then ends the
run as Ctrl-C does (``KeyboardInterrupt``: the scenario command reports it and exits 130)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from rich.console import Console

from contracts import ALL_TOPICS
from scripts import devstack
from scripts.scenarios.handle import StackHandle
from scripts.stack import FAST_PASSWORD_HASHING, ServiceProcesses, sqlite_urls
from shared.broker import ensure_topics
from shared.retention import PRUNER_OFF


@asynccontextmanager
async def local_stack(state_dir: Path, console: Console) -> AsyncIterator[StackHandle]:
    """Start Kafka and every service with their state in ``state_dir``; stop them all on the way out."""
    signals = devstack.CancelOnSignal()
    console.rule("TradeGuard local stack for the scenarios")
    broker = devstack.LocalBroker()
    services = ServiceProcesses(
        devstack.BOOTSTRAP,
        sqlite_urls(state_dir),
        state_dir / "logs",
        extra_env={**FAST_PASSWORD_HASHING, **PRUNER_OFF},
    )
    try:
        await broker.start()
        await ensure_topics(devstack.BOOTSTRAP, ALL_TOPICS)
        services.start()
        console.print(f"started {', '.join(f'{n} (pid {p.pid})' for n, p in services.processes.items())}")
        await services.wait_ready()
        console.print("every service has joined its consumer group")
        yield StackHandle.from_services(services)
    except asyncio.CancelledError:
        if signals.received is None:
            raise
        raise KeyboardInterrupt from None
    finally:
        # Blocking on purpose: a signal now only queues, so it cannot cut the clean-up short.
        console.print("stopping services...")
        services.stop()
        broker.stop()
