"""P5 / X2: a keyed command's repeat gets its first outcome while the key is kept; keys are
forgotten after idempotency.KEEP_FOR (then a repeat is a new command)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts import AccountRegistered, CommandRejected
from services.account.app import DEFINITION as ACCOUNT
from shared import idempotency
from shared.clock import ManualClock
from shared.db import migrate
from shared.tables import idempotency_keys
from tests.support.accounts import AccountDriver
from tests.support.records import record_of


async def key_count(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(sa.select(sa.func.count()).select_from(idempotency_keys))).scalar_one())


async def test_p5_keys_replay_the_first_outcome_until_they_are_pruned(
    engine: AsyncEngine, tmp_path: Path, clock: ManualClock
) -> None:
    await migrate(engine, ACCOUNT.migrations)
    driver = AccountDriver.create(engine, tmp_path, clock)
    register = driver.register("ana")

    first = await driver.send(record_of(register, idempotency_key="k-1"))
    again = await driver.send(record_of(register, idempotency_key="k-1"))  # a retry: new message id, same key
    assert isinstance(first[0], AccountRegistered)
    assert again == first  # the very same records, published again

    assert await idempotency.prune(engine, clock.now() + idempotency.KEEP_FOR - timedelta(minutes=1)) == 0
    assert await idempotency.prune(engine, clock.now() + idempotency.KEEP_FOR + timedelta(minutes=1)) == 1
    assert await key_count(engine) == 0

    late = await driver.send(record_of(register, idempotency_key="k-1"))  # forgotten: a new command
    assert [(type(m), getattr(m, "code", None)) for m in late] == [(CommandRejected, "account_exists")]
