"""Refunds (P6): what of each order's price left escrow and came back to the buyer, the refund
under way, and every refund by its id (returning, refunding, refunded or failed).

Revision ID: saga_0003
"""

import sqlalchemy as sa
from alembic import op

revision = "saga_0003"
down_revision = "saga_0002"
branch_labels = None
depends_on = None

WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.add_column(sa.Column("returned_minor", sa.BigInteger, nullable=False, server_default="0"))
        batch.add_column(sa.Column("refunded_minor", sa.BigInteger, nullable=False, server_default="0"))
        batch.add_column(sa.Column("refunding", sa.String(100)))
    op.create_table(
        "order_refunds",
        sa.Column("order_id", sa.String(100), primary_key=True),
        sa.Column("refund_id", sa.String(100), primary_key=True),
        sa.Column("amount_minor", sa.BigInteger, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("reason", sa.String(200), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("failure", sa.Text),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("order_refunds")
    with op.batch_alter_table("orders") as batch:
        for column in ("refunding", "refunded_minor", "returned_minor"):
            batch.drop_column(column)
