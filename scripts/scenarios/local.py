"""A local stack for `make scenarios`: Kafka from scripts/kafka.sh and the services as processes,
started and stopped the way `make demo` does (the pieces are scripts.devstack's)."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from rich.console import Console

from contracts import ALL_TOPICS
from scripts import devstack
from scripts.scenarios.handle import StackHandle
from scripts.stack import FAST_PASSWORD_HASHING, ServiceProcesses, sqlite_urls
from shared.broker import ensure_topics


@asynccontextmanager
async def local_stack(state_dir: Path, console: Console) -> AsyncIterator[StackHandle]:
    """Start Kafka and every service with their state in ``state_dir``; stop them all on the way out."""
    console.rule("TradeGuard local stack for the scenarios")
    devstack.kafka("start")
    services = ServiceProcesses(
        devstack.BOOTSTRAP, sqlite_urls(state_dir), state_dir / "logs", extra_env=FAST_PASSWORD_HASHING
    )
    try:
        await ensure_topics(devstack.BOOTSTRAP, ALL_TOPICS)
        services.start()
        console.print(f"started {', '.join(f'{n} (pid {p.pid})' for n, p in services.processes.items())}")
        await services.wait_ready()
        console.print("every service has joined its consumer group")
        yield StackHandle.from_services(services)
    finally:
        # A second Ctrl-C must not cut the clean-up short and leave processes behind.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        console.print("stopping services...")
        services.stop()
        devstack.kafka("stop")
        signal.signal(signal.SIGINT, previous)
