"""The five services as separate processes against the test broker, once per test module."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from scripts.marketplace import EventWatcher, Marketplace
from scripts.stack import ServiceProcesses, sqlite_urls


@pytest.fixture(scope="module")
def stack_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("stack")


@pytest.fixture(scope="module")
async def stack(kafka_bootstrap: str, stack_dir: Path) -> AsyncIterator[ServiceProcesses]:
    services = ServiceProcesses(kafka_bootstrap, sqlite_urls(stack_dir), stack_dir / "logs")
    services.start()
    try:
        await services.wait_ready(timeout=90)
        yield services
    finally:
        services.stop()


@pytest.fixture
async def market(kafka_bootstrap: str) -> AsyncIterator[Marketplace]:
    async with Marketplace(kafka_bootstrap) as market:
        yield market


@pytest.fixture
async def watcher(kafka_bootstrap: str, stack: ServiceProcesses) -> AsyncIterator[EventWatcher]:
    async with EventWatcher(kafka_bootstrap) as watcher:
        yield watcher


@pytest.fixture
def service_db(stack_dir: Path) -> dict[str, str]:
    return sqlite_urls(stack_dir)
