"""The escrow service's consumer on a test database, fed the saga's commands in-process: what
its integration tests share (tests/integration/test_escrow_*.py)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts import Message, parse_envelope
from services.escrow.app import DEFINITION as ESCROW
from shared.clock import ManualClock
from shared.consumer import BatchConsumer
from shared.tables import outbox
from tests.support.records import record_of


async def handle(engine: AsyncEngine, *commands: Message) -> None:
    """One batch of the saga's commands through the escrow service's consumer."""
    consumer = BatchConsumer(
        dependencies=None,
        name="escrow",
        engine=engine,
        handlers=ESCROW.handlers,
        rejections_topic=ESCROW.rejections_topic,
        hand_over=lambda _records: None,
        clock=ManualClock(),
    )
    await consumer.consume([record_of(c) for c in commands])


async def published(engine: AsyncEngine, *kinds: type[Message]) -> list[Message]:
    """Every message of ``kinds`` escrow published (its outbox), in order."""
    models = {m.message_type: m for m in kinds}
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(outbox.c.value).order_by(outbox.c.id))).scalars().all()
    events: list[Message] = []
    for value in rows:
        envelope = parse_envelope(value)
        if (model := models.get(envelope.type)) is not None:
            events.append(model.model_validate(envelope.payload))
    return events
