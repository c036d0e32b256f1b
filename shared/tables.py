"""The messaging tables every service database has (created by ``messaging_0001``)."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("topic", sa.String(200), nullable=False),
    sa.Column("key", sa.String(200), nullable=True),
    sa.Column("value", sa.LargeBinary(), nullable=False),
    sa.Column("headers", sa.JSON(), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

inbox = sa.Table(
    "inbox",
    metadata,
    sa.Column("message_id", sa.String(36), primary_key=True),
    sa.Column("message_type", sa.String(100), nullable=False),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
)
