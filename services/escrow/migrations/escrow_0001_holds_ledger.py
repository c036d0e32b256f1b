"""Escrow holds and the double-entry ledger.

Revision ID: escrow_0001
"""

import sqlalchemy as sa
from alembic import op

revision = "escrow_0001"
down_revision = None
branch_labels = ("escrow",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "escrow_holds",
        sa.Column("order_id", sa.String(100), primary_key=True),
        sa.Column("buyer_id", sa.String(100), nullable=False),
        sa.Column("seller_id", sa.String(100), nullable=False),
        sa.Column("amount_minor", sa.BigInteger, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "ledger_entries",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("transfer_id", sa.String(36), nullable=False, index=True),
        sa.Column("order_id", sa.String(100), nullable=False, index=True),
        sa.Column("account", sa.String(150), nullable=False),
        sa.Column("amount_minor", sa.BigInteger, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("ledger_entries")
    op.drop_table("escrow_holds")
