"""Wallets and wallet movements.

Revision ID: account_0001
"""

import sqlalchemy as sa
from alembic import op

revision = "account_0001"
down_revision = None
branch_labels = ("account",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "wallets",
        sa.Column("account_id", sa.String(100), primary_key=True),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("balance_minor", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "wallet_movements",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("account_id", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("reference", sa.String(200), nullable=False),
        sa.Column("amount_minor", sa.BigInteger, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("balance_after_minor", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("account_id", "kind", "reference", name="uq_movement_reference"),
    )


def downgrade() -> None:
    op.drop_table("wallet_movements")
    op.drop_table("wallets")
