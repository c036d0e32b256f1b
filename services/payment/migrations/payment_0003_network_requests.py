"""Card and bank payments (P1, P4) and limits (P2): the funding type, the network's charge id
and the limit reservation per payment; the requests to the funding network the worker sends;
the read copy of every buyer's limits and the spending per day and month.

Revision ID: payment_0003
"""

import sqlalchemy as sa
from alembic import op

revision = "payment_0003"
down_revision = "payment_0002"
branch_labels = None
depends_on = None

WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("payments") as batch:
        batch.add_column(sa.Column("funding_type", sa.String(20)))
        batch.add_column(sa.Column("charge_id", sa.String(100)))
        batch.add_column(sa.Column("limit_reserved_minor", sa.BigInteger))
        batch.add_column(sa.Column("limit_reserved_currency", sa.String(3)))
        batch.add_column(sa.Column("limit_day", sa.String(10)))
        batch.add_column(sa.Column("limit_month", sa.String(10)))
        for leg in ("wallet_leg", "source_leg"):
            batch.add_column(sa.Column(f"{leg}_minor", sa.BigInteger))
            batch.add_column(sa.Column(f"{leg}_currency", sa.String(3)))
    op.create_table(
        "account_limits",
        sa.Column("account_id", sa.String(100), primary_key=True),
        sa.Column("per_payment_minor", sa.BigInteger, nullable=False),
        sa.Column("per_payment_currency", sa.String(3), nullable=False),
        sa.Column("daily_minor", sa.BigInteger, nullable=False),
        sa.Column("daily_currency", sa.String(3), nullable=False),
        sa.Column("monthly_minor", sa.BigInteger, nullable=False),
        sa.Column("monthly_currency", sa.String(3), nullable=False),
        sa.Column("registered_at", WHEN, nullable=False),
        sa.Column("level", sa.String(2), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
    )
    op.create_table(
        "spending_windows",
        sa.Column("account_id", sa.String(100), primary_key=True),
        sa.Column("kind", sa.String(5), primary_key=True),
        sa.Column("start", sa.String(10), primary_key=True),
        sa.Column("spent_minor", sa.BigInteger, nullable=False),
        sa.Column("spent_currency", sa.String(3), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
    )
    op.create_table(
        "network_requests",
        sa.Column("request_id", sa.String(200), primary_key=True),
        sa.Column("order_id", sa.String(100), nullable=False),
        sa.Column("token", sa.String(64), nullable=False),
        sa.Column("amount_minor", sa.BigInteger, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("state", sa.String(10), nullable=False, index=True),
        sa.Column("not_before", WHEN),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("charge_id", sa.String(100)),
        sa.Column("last_reason", sa.String(100)),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
    )


def downgrade() -> None:
    for table in ("network_requests", "spending_windows", "account_limits"):
        op.drop_table(table)
    with op.batch_alter_table("payments") as batch:
        for column in (
            "source_leg_currency",
            "source_leg_minor",
            "wallet_leg_currency",
            "wallet_leg_minor",
            "limit_month",
            "limit_day",
            "limit_reserved_currency",
            "limit_reserved_minor",
        ):
            batch.drop_column(column)
        batch.drop_column("charge_id")
        batch.drop_column("funding_type")
