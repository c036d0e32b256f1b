"""E1 ledger persisted: a versioned row per ledger account (its four totals) and an append-only
log of transfer records (the database id is the global order); each hold keeps its open
reservation (the pending transfer reserving what is still held for the seller).

``ledger_entries`` stays, read-only, for the rows written before this revision (its holds were
booked the old way and are not carried into the new books).

Revision ID: escrow_0004
"""

import sqlalchemy as sa
from alembic import op

revision = "escrow_0004"
down_revision = "escrow_0003"
branch_labels = None
depends_on = None

WHEN = sa.DateTime(timezone=True)
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("escrow_holds") as batch:
        batch.add_column(sa.Column("reservation_id", sa.String(200), nullable=True))
        batch.add_column(sa.Column("reserved_at", WHEN, nullable=True))
    op.create_table(
        "ledger_accounts",
        sa.Column("code", sa.String(200), primary_key=True),
        sa.Column("kind", sa.String(30), nullable=False),
        sa.Column("owner", sa.String(100), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("order_id", sa.String(100), nullable=True),
        sa.Column("debits_pending", sa.BigInteger, nullable=False),
        sa.Column("debits_posted", sa.BigInteger, nullable=False),
        sa.Column("credits_pending", sa.BigInteger, nullable=False),
        sa.Column("credits_posted", sa.BigInteger, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
        sa.UniqueConstraint("order_id", "kind", name="uq_ledger_accounts_order_kind"),
    )
    op.create_table(
        "ledger_transfers",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("transfer_id", sa.String(200), nullable=False, unique=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("debit_account", sa.String(200), nullable=False),
        sa.Column("credit_account", sa.String(200), nullable=False),
        sa.Column("amount_minor", sa.BigInteger, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("order_id", sa.String(100), nullable=False, index=True),
        sa.Column("code", sa.String(20), nullable=False),
        sa.Column("pending_id", sa.String(200), nullable=True),
        sa.Column("expires_at", WHEN, nullable=True),
        sa.Column("applied_at", WHEN, nullable=False),
        sa.Column("linked_set", sa.String(200), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("ledger_transfers")
    op.drop_table("ledger_accounts")
    with op.batch_alter_table("escrow_holds") as batch:
        batch.drop_column("reserved_at")
        batch.drop_column("reservation_id")
