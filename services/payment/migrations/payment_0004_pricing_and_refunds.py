"""Pricing (P3) and refunds (P6): each payment's quote, breakdowns and promotion budget booked,
and what has been refunded of it, by source; the quotes given to buyers; each discount
campaign's used budget; the buyer's country in the limits copy (region-limited promotions).

Revision ID: payment_0004
"""

import sqlalchemy as sa
from alembic import op

revision = "payment_0004"
down_revision = "payment_0003"
branch_labels = None
depends_on = None

WHEN = sa.DateTime(timezone=True)
REFUND_TOTALS = ("refunded", "refunded_to_buyer", "source_refunded", "wallet_refunded")


def upgrade() -> None:
    with op.batch_alter_table("payments") as batch:
        batch.add_column(sa.Column("quote_id", sa.String(100)))
        batch.add_column(sa.Column("pricing", sa.JSON))
        batch.add_column(sa.Column("budget_reserved", sa.JSON))
        for total in REFUND_TOTALS:
            batch.add_column(sa.Column(f"{total}_minor", sa.BigInteger))
            batch.add_column(sa.Column(f"{total}_currency", sa.String(3)))
    with op.batch_alter_table("account_limits") as batch:
        batch.add_column(sa.Column("country", sa.String(2)))
    op.create_table(
        "quotes",
        sa.Column("quote_id", sa.String(100), primary_key=True),
        sa.Column("order_id", sa.String(100), nullable=False),
        sa.Column("buyer_id", sa.String(100), nullable=False),
        sa.Column("amount_minor", sa.BigInteger, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("buyer_currency", sa.String(3), nullable=False),
        sa.Column("rate", sa.JSON),
        sa.Column("breakdowns", sa.JSON, nullable=False),
        sa.Column("expires_at", WHEN, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
    )
    op.create_table(
        "campaign_budgets",
        sa.Column("promotion_id", sa.String(64), primary_key=True),
        sa.Column("used_minor", sa.BigInteger, nullable=False),
        sa.Column("used_currency", sa.String(3), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("campaign_budgets")
    op.drop_table("quotes")
    with op.batch_alter_table("account_limits") as batch:
        batch.drop_column("country")
    with op.batch_alter_table("payments") as batch:
        for total in reversed(REFUND_TOTALS):
            batch.drop_column(f"{total}_currency")
            batch.drop_column(f"{total}_minor")
        for column in ("budget_reserved", "pricing", "quote_id"):
            batch.drop_column(column)
