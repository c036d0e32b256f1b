"""The in-app inbox: every notification recorded once per recipient, kind and reference."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from services.notification.domain import Notice

metadata = sa.MetaData()

notifications = sa.Table(
    "notifications",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("recipient_id", sa.String(100), nullable=False, index=True),
    sa.Column("kind", sa.String(50), nullable=False),
    sa.Column("reference", sa.String(200), nullable=False),
    sa.Column("channel", sa.String(20), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("correlation_id", sa.String(200), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("recipient_id", "kind", "reference", name="uq_notification_once"),
)


# "Record it unless it is already there" in one statement; both dialects spell it ON CONFLICT.
_INSERT_ONCE = {
    "sqlite": sqlite.insert(notifications).on_conflict_do_nothing(),
    "postgresql": postgresql.insert(notifications).on_conflict_do_nothing(),
}


class NotificationStore:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def add_once(self, notice: Notice, correlation_id: str) -> bool:
        """Record the notification; False when this recipient already has it for this step."""
        result = await self._connection.execute(
            _INSERT_ONCE[self._connection.dialect.name],
            {
                "recipient_id": notice.recipient_id,
                "kind": notice.kind.value,
                "reference": notice.reference,
                "channel": "in_app",
                "body": notice.body,
                "correlation_id": correlation_id,
                "created_at": datetime.now(UTC),
            },
        )
        return result.rowcount == 1
