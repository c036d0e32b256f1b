"""The in-app inbox: every notification stored once per recipient, kind and reference."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from services.notification.domain import Notice, NoticeKind
from shared.aggregates import Aggregate

metadata = sa.MetaData()

notifications = sa.Table(
    "notifications",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("recipient_id", sa.String(100), nullable=False, index=True),
    sa.Column("kind", sa.String(50), nullable=False),
    sa.Column("reference", sa.String(200), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("correlation_id", sa.String(200), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("recipient_id", "kind", "reference", name="uq_notification_once"),
)


@dataclass(slots=True)
class InboxEntry:
    """A notice as stored in a user's inbox, with the flow it came from."""

    recipient_id: str
    kind: NoticeKind
    reference: str
    body: str
    correlation_id: str

    @classmethod
    def of(cls, notice: Notice, correlation_id: str) -> InboxEntry:
        return cls(notice.recipient_id, notice.kind, notice.reference, notice.body, correlation_id)


INBOX = Aggregate(InboxEntry, notifications, key=("recipient_id", "kind", "reference"))
