"""Refunds (P6): one row per refund, with what the buyer gets back and where, and its status;
network requests may now be refunds and refund inquiries (``refund_status`` needs a wider
``kind`` column).

Revision ID: payment_0005
"""

import sqlalchemy as sa
from alembic import op

revision = "payment_0005"
down_revision = "payment_0004"
branch_labels = None
depends_on = None

WHEN = sa.DateTime(timezone=True)
PARTS = ("buyer_amount", "source_part", "wallet_part")


def upgrade() -> None:
    op.create_table(
        "refunds",
        sa.Column("refund_id", sa.String(100), primary_key=True),
        sa.Column("order_id", sa.String(100), nullable=False),
        sa.Column("buyer_id", sa.String(100), nullable=False),
        sa.Column("amount_minor", sa.BigInteger, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        *(
            column
            for part in PARTS
            for column in (
                sa.Column(f"{part}_minor", sa.BigInteger, nullable=False),
                sa.Column(f"{part}_currency", sa.String(3), nullable=False),
            )
        ),
        sa.Column("source_type", sa.String(20)),
        sa.Column("reason", sa.String(200), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("remaining_minor", sa.BigInteger),
        sa.Column("remaining_currency", sa.String(3)),
        sa.Column("failure_reason", sa.String(100)),
        sa.Column("failure_detail", sa.Text),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
    )
    op.create_index("ix_refunds_order_id", "refunds", ["order_id"])
    op.create_index("ix_refunds_buyer_id", "refunds", ["buyer_id"])
    with op.batch_alter_table("network_requests") as batch:
        batch.alter_column("kind", existing_type=sa.String(10), type_=sa.String(20), existing_nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("network_requests") as batch:
        batch.alter_column("kind", existing_type=sa.String(20), type_=sa.String(10), existing_nullable=False)
    op.drop_index("ix_refunds_buyer_id", "refunds")
    op.drop_index("ix_refunds_order_id", "refunds")
    op.drop_table("refunds")
