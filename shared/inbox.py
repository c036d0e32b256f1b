"""Inbox: the ids of messages already handled, so a redelivery changes nothing.

Written in the same transaction as the handler's effects, so "handled" and
"recorded as handled" can never disagree. Dead-lettered messages are not recorded:
re-driven after a fix, they are handled once.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

from shared.sql import Transaction
from shared.tables import inbox


async def already_handled(tx: Transaction, message_ids: Collection[str]) -> set[str]:
    """Which of these message ids this service has handled before."""
    if not message_ids:
        return set()
    return {row["message_id"] for row in await tx.select_in(inbox, ("message_id",), list(message_ids))}


async def record_handled(tx: Transaction, messages: Sequence[tuple[str, str]], now: datetime) -> None:
    """Record (message_id, message_type) pairs as handled."""
    if not messages:
        return
    await tx.insert(inbox, [{"message_id": mid, "message_type": mtype, "received_at": now} for mid, mtype in messages])
