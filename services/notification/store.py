"""The in-app inbox: every notification recorded once per recipient, kind and reference."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
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


_SELECT_NOTIFICATION = sa.select(notifications.c.id).where(
    notifications.c.recipient_id == sa.bindparam("recipient"),
    notifications.c.kind == sa.bindparam("notice_kind"),
    notifications.c.reference == sa.bindparam("notice_reference"),
)
_INSERT_NOTIFICATION = notifications.insert()


class NotificationStore:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def exists(self, notice: Notice) -> bool:
        params = {
            "recipient": notice.recipient_id,
            "notice_kind": notice.kind.value,
            "notice_reference": notice.reference,
        }
        return (await self._connection.execute(_SELECT_NOTIFICATION, params)).first() is not None

    async def add(self, notice: Notice, correlation_id: str) -> None:
        await self._connection.execute(
            _INSERT_NOTIFICATION,
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
