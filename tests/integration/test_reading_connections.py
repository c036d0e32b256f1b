"""X6: a read never waits for a writer (shared.db.reading).

Under the chaos run, 200 orders polling the payment service's read API while its batches wrote
made every read take SQLite's write lock (BEGIN IMMEDIATE), fail with "database is locked" and
block the service's loop meanwhile. A reading connection takes a snapshot instead: it answers
while another connection holds the write lock, sees only what was committed, and on PostgreSQL
changes nothing.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db import create_engine, reading

ITEMS = sa.Table("items", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True), sa.Column("name", sa.Text))


async def _engine_with_one_item(url: str) -> AsyncEngine:
    engine = create_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(ITEMS.metadata.create_all)
        await conn.execute(ITEMS.insert().values(id=1, name="committed"))
    return engine


async def test_x6_a_read_answers_while_another_connection_holds_the_write_lock(database_url: str) -> None:
    engine = await _engine_with_one_item(database_url)
    try:
        async with engine.connect() as writer:
            await writer.execute(ITEMS.insert().values(id=2, name="not yet committed"))  # holds the write lock
            async with reading(engine) as reader:
                names = (await reader.execute(sa.select(ITEMS.c.name).order_by(ITEMS.c.id))).scalars().all()
            await writer.commit()
        assert names == ["committed"]  # a snapshot of what was committed, taken without waiting

        async with reading(engine) as reader:
            assert (await reader.execute(sa.select(sa.func.count()).select_from(ITEMS))).scalar_one() == 2
    finally:
        await engine.dispose()


async def test_x6_without_it_a_read_on_sqlite_waits_for_the_writer_and_fails(tmp_path: object) -> None:
    """What reading() is for: the service's other connections take the write lock to read."""
    engine = await _engine_with_one_item(f"sqlite+aiosqlite:///{tmp_path}/locked.db")
    try:
        async with engine.connect() as writer:
            await writer.execute(ITEMS.insert().values(id=2, name="not yet committed"))
            async with engine.connect() as plain:
                try:
                    await plain.execute(sa.select(ITEMS.c.name))
                    locked = False
                except sa.exc.OperationalError as error:
                    locked = "database is locked" in str(error)
            await writer.rollback()
        assert locked
    finally:
        await engine.dispose()
