"""Fixtures the integration tests share."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from services.payment.app import DEFINITION as PAYMENT
from shared.db import create_engine, migrate
from tests.support.funding import FundingSimulator


@pytest.fixture
async def second_instance(database_url: str) -> AsyncIterator[AsyncEngine]:
    """A second engine on the same database: another instance of a service, for races that only
    PostgreSQL's concurrent transactions can show (SQLite serialises writers)."""
    if not database_url.startswith("postgresql"):
        pytest.skip("needs PostgreSQL's concurrent transactions (SQLite serialises writers)")
    other = create_engine(database_url)
    yield other
    await other.dispose()


@pytest.fixture
async def payment_db(engine: AsyncEngine) -> AsyncEngine:
    """A test database with the payment service's schema."""
    await migrate(engine, PAYMENT.migrations)
    return engine


@pytest.fixture(scope="module")
async def simulator(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[FundingSimulator]:
    """The funding network simulator as a process, one per test module."""
    process = FundingSimulator(tmp_path_factory.mktemp("funding"))
    await process.start()
    try:
        yield process
    finally:
        await process.stop()
