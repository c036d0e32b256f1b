"""The messaging tables every service database has (``messaging_0001`` to ``messaging_0004``)."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("topic", sa.String(200), nullable=False),
    # The record exactly as it will be sent: key bytes, headers as JSON pairs (shared.outbox.encode_headers).
    sa.Column("key", sa.LargeBinary(), nullable=True),
    sa.Column("value", sa.LargeBinary(), nullable=False),
    sa.Column("headers", sa.Text(), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

inbox = sa.Table(
    "inbox",
    metadata,
    sa.Column("message_id", sa.String(36), primary_key=True),
    sa.Column("message_type", sa.String(100), nullable=False),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False, index=True),
)

idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    # "<command type>:<idempotency key>": a key names one intent of one kind of command.
    sa.Column("scoped_key", sa.String(400), primary_key=True),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    # The records the first handling produced (JSON), published again for a repeat.
    sa.Column("outcome", sa.Text(), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),
)

consumer_offsets = sa.Table(
    "consumer_offsets",
    metadata,
    # The next record to consume of each partition, stored with the effects of the records before it.
    sa.Column("topic", sa.String(200), primary_key=True),
    sa.Column("partition", sa.Integer, primary_key=True),
    sa.Column("next_offset", sa.BigInteger, nullable=False),
    sa.Column("cluster_id", sa.String(64), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)
