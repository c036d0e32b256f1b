"""Consumed offsets stored with the effects, and the indexes the pruner reads by age.

``consumer_offsets`` holds, per topic partition, the offset of the next record to consume,
written in the same transaction as the batch's effects and inbox rows (shared.offsets): a
database restored from a backup rewinds its offsets with its effects, and the consumer seeks
back to them. ``cluster_id`` names the Kafka cluster the offsets belong to: a broker whose
storage was formatted anew starts from its own beginning, never from another log's offsets.

Revision ID: messaging_0004
"""

import sqlalchemy as sa
from alembic import op

revision = "messaging_0004"
down_revision = "messaging_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "consumer_offsets",
        sa.Column("topic", sa.String(200), primary_key=True),
        sa.Column("partition", sa.Integer, primary_key=True),
        sa.Column("next_offset", sa.BigInteger, nullable=False),
        sa.Column("cluster_id", sa.String(64), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_inbox_received_at", "inbox", ["received_at"])
    op.create_index("ix_idempotency_keys_created_at", "idempotency_keys", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_idempotency_keys_created_at", "idempotency_keys")
    op.drop_index("ix_inbox_received_at", "inbox")
    op.drop_table("consumer_offsets")
