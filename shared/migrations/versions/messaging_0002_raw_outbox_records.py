"""Outbox rows hold records exactly as sent: key as bytes, headers as ordered pairs of bytes.

Dead letters carry the original record's key and headers, which need not be UTF-8.

Revision ID: messaging_0002
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "messaging_0002"
down_revision = "messaging_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    connection = op.get_bind()
    rows = connection.execute(sa.text("SELECT id, headers FROM outbox")).all()
    with op.batch_alter_table("outbox") as batch:
        batch.alter_column(
            "key",
            type_=sa.LargeBinary(),
            existing_nullable=True,
            postgresql_using="convert_to(key, 'UTF8')",
        )
        batch.alter_column("headers", type_=sa.Text(), existing_nullable=False, postgresql_using="headers::text")
    if connection.dialect.name == "sqlite":
        connection.execute(sa.text("UPDATE outbox SET key = CAST(key AS BLOB) WHERE key IS NOT NULL"))
    for row_id, headers in rows:
        as_dict = headers if isinstance(headers, dict) else json.loads(headers)
        pairs = json.dumps([[name, value] for name, value in as_dict.items()], separators=(",", ":"))
        connection.execute(sa.text("UPDATE outbox SET headers = :h WHERE id = :id"), {"h": pairs, "id": row_id})


def downgrade() -> None:
    raise NotImplementedError("outbox rows with binary keys cannot be turned back into text")
