"""Fixtures the integration tests share."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db import create_engine


@pytest.fixture
async def second_instance(database_url: str) -> AsyncIterator[AsyncEngine]:
    """A second engine on the same database: another instance of a service, for races that only
    PostgreSQL's concurrent transactions can show (SQLite serialises writers)."""
    if not database_url.startswith("postgresql"):
        pytest.skip("needs PostgreSQL's concurrent transactions (SQLite serialises writers)")
    other = create_engine(database_url)
    yield other
    await other.dispose()
