"""Day-2 (issue 19): each batch's next offsets are stored in the same transaction as its
effects (shared.offsets), on SQLite and PostgreSQL, so a restored database knows where its
consumption stood; offsets only move forward within a cluster, and another cluster's are not used."""

from __future__ import annotations

import dataclasses

import pytest
import sqlalchemy as sa
from aiokafka import TopicPartition
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts import FundWallet, Money, ResendPhoneCode
from services.account.app import DEFINITION as ACCOUNT
from services.account.store import movements
from shared.clock import ManualClock
from shared.consumer import BatchConsumer, HandlerContext, MessageHandlers
from shared.db import migrate
from shared.errors import SystemFault
from shared.sql import AlchemyTransaction, SqliteTransaction
from shared.tables import consumer_offsets
from tests.support.records import Record, record_of

CLUSTER = "cluster-a"


@pytest.fixture
async def account_db(engine: AsyncEngine) -> AsyncEngine:
    await migrate(engine, ACCOUNT.migrations)
    return engine


def consumer(
    engine: AsyncEngine, cluster_id: str | None = CLUSTER, handlers: MessageHandlers = ACCOUNT.handlers
) -> BatchConsumer:
    batch = BatchConsumer(
        name="account",
        engine=engine,
        handlers=handlers,
        rejections_topic=ACCOUNT.rejections_topic,
        hand_over=lambda _stored: None,
        clock=ManualClock(),
    )
    batch.cluster_id = cluster_id
    return batch


def funding(account_id: str, *, partition: int, offset: int) -> Record:
    record = record_of(FundWallet(account_id=account_id, amount=Money(amount_minor=100, currency="USD")))
    return dataclasses.replace(record, partition=partition, offset=offset)


async def movement_rows(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(sa.select(sa.func.count()).select_from(movements))).scalar_one())


async def test_day2_a_batch_stores_its_next_offsets_with_its_effects(account_db: AsyncEngine) -> None:
    batch = consumer(account_db)
    await batch.consume([funding("alice", partition=0, offset=7), funding("bob", partition=1, offset=3)])
    await batch.consume([funding("carol", partition=0, offset=8)])

    topic = FundWallet.topic.name
    assert await batch.stored_offsets() == {TopicPartition(topic, 0): 9, TopicPartition(topic, 1): 4}
    assert await movement_rows(account_db) == 3


async def test_day2_stored_offsets_never_move_back_within_a_cluster(account_db: AsyncEngine) -> None:
    batch = consumer(account_db)
    await batch.consume([funding("alice", partition=0, offset=50)])
    await batch.consume([funding("late", partition=0, offset=10)])  # a revoked owner's late batch
    assert await batch.stored_offsets() == {TopicPartition(FundWallet.topic.name, 0): 51}


async def test_day2_another_clusters_offsets_are_not_used_and_are_replaced(account_db: AsyncEngine) -> None:
    await consumer(account_db, "old-cluster").consume([funding("alice", partition=0, offset=500)])
    fresh = consumer(account_db, CLUSTER)
    assert await fresh.stored_offsets() == {}  # a broker formatted anew: start at its own beginning
    await fresh.consume([funding("bob", partition=0, offset=2)])
    assert await fresh.stored_offsets() == {TopicPartition(FundWallet.topic.name, 0): 3}
    async with account_db.connect() as conn:
        rows = (await conn.execute(sa.select(consumer_offsets.c.cluster_id, consumer_offsets.c.next_offset))).all()
    assert [tuple(r) for r in rows] == [(CLUSTER, 3)]


async def test_day2_offsets_and_effects_commit_together_or_not_at_all(
    account_db: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = consumer(account_db)
    await batch.consume([funding("alice", partition=0, offset=1)])

    async def database_gone(*_: object) -> None:
        raise OperationalError("INSERT INTO consumer_offsets", {}, ConnectionError("the database went away"))

    for transaction in (SqliteTransaction, AlchemyTransaction):
        monkeypatch.setattr(transaction, "advance_offsets", database_gone)
    with pytest.raises(SystemFault, match="went away"):
        await batch.consume([funding("bob", partition=0, offset=2)])
    monkeypatch.undo()
    assert await batch.stored_offsets() == {TopicPartition(FundWallet.topic.name, 0): 2}
    assert await movement_rows(account_db) == 1  # bob's funding was rolled back with its offset


async def test_day2_a_batch_of_nothing_for_this_service_is_stored_with_the_next(account_db: AsyncEngine) -> None:
    batch = consumer(account_db, handlers=funding_only())
    resend = record_of(ResendPhoneCode(account_id="x"))  # not handled by this consumer: skipped
    await batch.consume([dataclasses.replace(resend, partition=2, offset=40)])
    assert await batch.stored_offsets() == {}
    await batch.consume([funding("alice", partition=0, offset=5)])
    topic = FundWallet.topic.name
    assert await batch.stored_offsets() == {TopicPartition(topic, 2): 41, TopicPartition(topic, 0): 6}


def funding_only() -> MessageHandlers:
    """A service that handles FundWallet (doing nothing) and nothing else of the account commands."""
    handlers = MessageHandlers()

    @handlers.on(FundWallet)
    def fund(_command: FundWallet, _ctx: HandlerContext) -> None:
        return None

    return handlers


async def test_day2_without_a_cluster_nothing_is_stored(account_db: AsyncEngine) -> None:
    batch = consumer(account_db, None)
    await batch.consume([funding("alice", partition=0, offset=1)])
    async with account_db.connect() as conn:
        assert (await conn.execute(sa.select(sa.func.count()).select_from(consumer_offsets))).scalar_one() == 0
