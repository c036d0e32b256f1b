"""Inbox: the ids of messages already handled, so a redelivery changes nothing.

Written in the same transaction as the handler's effects, so "handled" and
"recorded as handled" can never disagree. Dead-lettered messages are not recorded:
re-driven after a fix, they are handled once.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.tables import inbox

_INSERT = inbox.insert()
_SELECT = sa.select(inbox.c.message_id).where(inbox.c.message_id.in_(sa.bindparam("ids", expanding=True)))


async def already_handled(connection: AsyncConnection, message_ids: Collection[str]) -> set[str]:
    """Which of these message ids this service has handled before."""
    if not message_ids:
        return set()
    rows = await connection.execute(_SELECT, {"ids": list(message_ids)})
    return set(rows.scalars())


async def record_handled(connection: AsyncConnection, messages: Sequence[tuple[str, str]], now: datetime) -> None:
    """Record (message_id, message_type) pairs as handled."""
    if not messages:
        return
    await connection.execute(
        _INSERT,
        [{"message_id": mid, "message_type": mtype, "received_at": now} for mid, mtype in messages],
    )
