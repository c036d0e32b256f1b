"""Optimistic concurrency and database outages, on SQLite and PostgreSQL (issues 17 and 22, X2/S5).

Every aggregate row carries a version; the batch unit of work writes a row back only if it
still has the version it read. A conflict re-runs the batch, a database that is gone is a
system fault: neither is ever a dead letter.
"""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts import FundWallet, Money
from contracts.money import Balance
from services.account.app import DEFINITION as ACCOUNT
from services.account.domain.wallets import Wallet
from services.account.store import WALLETS, wallets
from shared.clock import ManualClock
from shared.consumer import BatchConsumer
from shared.db import create_engine, migrate
from shared.errors import SystemFault
from shared.sql import open_database
from shared.tables import outbox
from shared.unit_of_work import BatchUnitOfWork, VersionConflict
from tests.conftest import POSTGRES_SH
from tests.support.records import record_of

USD = "USD"


def usd(minor: int) -> Money:
    return Money(amount_minor=minor, currency=USD)


@pytest.fixture
async def account_db(engine: AsyncEngine) -> AsyncEngine:
    await migrate(engine, ACCOUNT.migrations)
    return engine


async def row(engine: AsyncEngine, account_id: str) -> tuple[Any, ...] | None:
    async with engine.connect() as conn:
        found = (
            await conn.execute(
                sa.select(wallets.c.balance_minor, wallets.c.version).where(wallets.c.account_id == account_id)
            )
        ).first()
    return tuple(found) if found is not None else None


async def test_x2_a_stale_write_is_refused_by_its_version(account_db: AsyncEngine, clock: ManualClock) -> None:
    db = open_database(account_db)
    try:
        async with db.transaction() as tx:
            first = BatchUnitOfWork(clock)
            await first.load(tx, {WALLETS: {"w"}})
            first.scope().add(WALLETS, Wallet("w", Balance(amount_minor=10, currency=USD)))
            await first.write(tx)
        assert await row(account_db, "w") == (10, 1)

        # Two readers of version 1: the first to write wins, the second conflicts.
        async with db.transaction() as tx:
            winner = BatchUnitOfWork(clock)
            await winner.load(tx, {WALLETS: {"w"}})
        async with db.transaction() as tx:
            loser = BatchUnitOfWork(clock)
            await loser.load(tx, {WALLETS: {"w"}})
        async with db.transaction() as tx:
            scope = winner.scope()
            wallet = scope.get(WALLETS, "w")
            assert wallet is not None
            wallet.balance = Balance(amount_minor=20, currency=USD)
            scope.keep()
            await winner.write(tx)
        scope = loser.scope()
        stale = scope.get(WALLETS, "w")
        assert stale is not None
        stale.balance = Balance(amount_minor=99, currency=USD)
        scope.keep()
        async with db.transaction() as tx:
            with pytest.raises(VersionConflict, match="Wallet"):
                await loser.write(tx)
        assert await row(account_db, "w") == (20, 2)

        # Creating a row someone else created meanwhile is a conflict too, not an overwrite.
        async with db.transaction() as tx:
            late = BatchUnitOfWork(clock)
            await late.load(tx, {WALLETS: {"new"}})
        async with db.transaction() as tx:
            early = BatchUnitOfWork(clock)
            await early.load(tx, {WALLETS: {"new"}})
            early.scope().add(WALLETS, Wallet("new", Balance(amount_minor=1, currency=USD)))
            await early.write(tx)
        late.scope().add(WALLETS, Wallet("new", Balance(amount_minor=2, currency=USD)))
        async with db.transaction() as tx:
            with pytest.raises(VersionConflict):
                await late.write(tx)
        assert await row(account_db, "new") == (1, 1)
    finally:
        await db.close()


@pytest.fixture
def pg_account(account_db: AsyncEngine, database_url: str) -> AsyncEngine:
    """The migrated account database, on PostgreSQL only: SQLite serialises writers with its
    write lock (BEGIN IMMEDIATE), so only concurrent transactions can interleave like this."""
    if not database_url.startswith("postgresql"):
        pytest.skip("needs PostgreSQL's concurrent transactions")
    return account_db


@pytest.fixture
async def other_session(database_url: str) -> AsyncIterator[AsyncEngine]:
    """A second client of the same database (another instance, another operator)."""
    other = create_engine(database_url)
    yield other
    await other.dispose()


def account_consumer(engine: AsyncEngine, clock: ManualClock) -> BatchConsumer:
    return BatchConsumer(
        name="account",
        engine=engine,
        handlers=ACCOUNT.handlers,
        rejections_topic=ACCOUNT.rejections_topic,
        hand_over=lambda _stored: None,
        clock=clock,
    )


async def outbox_topics(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        return list((await conn.execute(sa.select(outbox.c.topic).order_by(outbox.c.id))).scalars())


@pytest.mark.postgres
async def test_x2_a_second_instance_writing_mid_batch_makes_the_batch_re_run(
    pg_account: AsyncEngine, other_session: AsyncEngine, clock: ManualClock
) -> None:
    consumer = account_consumer(pg_account, clock)
    await consumer.consume([record_of(FundWallet(account_id="raced", amount=usd(100)))])
    original_load = consumer._load
    runs = 0

    async def load_then_race(tx: Any, deliveries: Any) -> Any:
        nonlocal runs
        runs += 1
        uow = await original_load(tx, deliveries)
        if runs == 1:  # another instance tops up the same wallet and commits first
            async with other_session.begin() as conn:
                await conn.execute(
                    wallets.update()
                    .where(wallets.c.account_id == "raced")
                    .values(balance_minor=wallets.c.balance_minor + 5, version=wallets.c.version + 1)
                )
        return uow

    consumer._load = load_then_race  # type: ignore[method-assign]
    await consumer.consume([record_of(FundWallet(account_id="raced", amount=usd(1000)))])

    assert runs == 2  # the conflict re-ran the batch on fresh state
    assert await row(pg_account, "raced") == (1105, 3)  # both top-ups kept, neither lost
    assert "tradeguard.dead-letter" not in await outbox_topics(pg_account)


def _psql(sql: str) -> None:
    subprocess.run(["bash", str(POSTGRES_SH), "sql", sql], check=True, capture_output=True)


@pytest.mark.postgres
async def test_x2_postgresql_refusing_connections_is_a_system_fault_and_the_batch_goes_through_after(
    pg_account: AsyncEngine, database_url: str, clock: ManualClock
) -> None:
    database = sa.engine.make_url(database_url).database
    assert database is not None
    consumer = account_consumer(pg_account, clock)
    record = record_of(FundWallet(account_id="patient", amount=usd(100)))
    # The database goes away: new connections refused, the open ones killed.
    _psql(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
    _psql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}'")
    try:
        with pytest.raises(SystemFault):
            await consumer.consume([record])
    finally:
        _psql(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
    await consumer.consume([record])  # offered again, as the subscriber does after its backoff

    assert await row(pg_account, "patient") == (100, 1)
    assert await outbox_topics(pg_account) == ["tradeguard.account.events"]  # WalletFunded once, no dead letter


@pytest.mark.postgres
async def test_x2_a_lock_timeout_while_writing_is_a_system_fault_not_a_bug(
    pg_account: AsyncEngine, other_session: AsyncEngine, clock: ManualClock
) -> None:
    consumer = account_consumer(pg_account, clock)
    await consumer.consume([record_of(FundWallet(account_id="locked", amount=usd(100)))])
    top_up = record_of(FundWallet(account_id="locked", amount=usd(1)))
    async with other_session.begin() as holder:  # another session holds the row past the lock timeout
        await holder.execute(sa.select(wallets).where(wallets.c.account_id == "locked").with_for_update())
        with pytest.raises(SystemFault, match="lock timeout"):
            await consumer.consume([top_up])
    await consumer.consume([top_up])  # offered again once the lock is gone

    assert await row(pg_account, "locked") == (101, 2)
    assert "tradeguard.dead-letter" not in await outbox_topics(pg_account)
