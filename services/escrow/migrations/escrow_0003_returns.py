"""Returns (P6): what of each hold went back for refunds, and each refund's return by its id
(so a repeat answers the same without moving money twice).

Revision ID: escrow_0003
"""

import sqlalchemy as sa
from alembic import op

revision = "escrow_0003"
down_revision = "escrow_0002"
branch_labels = None
depends_on = None

WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("escrow_holds") as batch:
        batch.add_column(sa.Column("returned_minor", sa.BigInteger, nullable=False, server_default="0"))
    op.create_table(
        "escrow_returns",
        sa.Column("order_id", sa.String(100), primary_key=True),
        sa.Column("refund_id", sa.String(100), primary_key=True),
        sa.Column("amount_minor", sa.BigInteger, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("still_held_minor", sa.BigInteger, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("escrow_returns")
    with op.batch_alter_table("escrow_holds") as batch:
        batch.drop_column("returned_minor")
