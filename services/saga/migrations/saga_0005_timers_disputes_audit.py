"""The saga's timers, retries and attempts (S2, S3, S4), disputes (E3) and the audit trail (S6).

Orders gain their payment attempt, the payment window's and the protection's ends, the
timers (with the earliest copied to ``next_due_at`` for the deadline sweeper), the refund
retry state, and what needs an operator. Disputes get a table of their own. Every handled
message now leaves a row in ``order_audit`` (what came in, the status change, what was sent,
a note); the old ``order_transitions`` rows are carried into it. Orders placed before this
migration have no timers: they finish as they would have before.

Revision ID: saga_0005
"""

import sqlalchemy as sa
from alembic import op

revision = "saga_0005"
down_revision = "saga_0004"
branch_labels = None
depends_on = None

WHEN = sa.DateTime(timezone=True)
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.add_column(sa.Column("shipping_method", sa.String(40)))
        batch.add_column(sa.Column("attempt", sa.Integer, nullable=False, server_default="1"))
        batch.add_column(sa.Column("pay_by", WHEN))
        batch.add_column(sa.Column("release_at", WHEN))
        batch.add_column(sa.Column("protection_extended", sa.Boolean, nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("dispute_id", sa.String(100)))
        batch.add_column(sa.Column("release_after_refund", sa.Boolean, nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("refund_attempt", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("refund_retry", sa.JSON))
        batch.add_column(sa.Column("attention", sa.Text))
        batch.add_column(sa.Column("timers", sa.JSON, nullable=False, server_default=sa.text("'{}'")))
        batch.add_column(sa.Column("next_due_at", WHEN))
        batch.add_column(sa.Column("actions", sa.JSON, nullable=False, server_default=sa.text("'[]'")))
        batch.create_index("ix_orders_next_due_at", ["next_due_at"])
    with op.batch_alter_table("order_refunds") as batch:
        batch.add_column(sa.Column("dispute_id", sa.String(100)))
    op.create_table(
        "order_disputes",
        sa.Column("order_id", sa.String(100), primary_key=True),
        sa.Column("dispute_id", sa.String(100), nullable=False),
        sa.Column("buyer_id", sa.String(100), nullable=False),
        sa.Column("reason", sa.String(30), nullable=False),
        sa.Column("opened_at", WHEN, nullable=False),
        sa.Column("answer_by", WHEN, nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("evidence", sa.JSON, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("statement", sa.Text),
        sa.Column("seller_evidence", sa.JSON, nullable=False),
        sa.Column("resolution", sa.String(20)),
        sa.Column("refund_minor", sa.BigInteger),
        sa.Column("refund_currency", sa.String(3)),
        sa.Column("decided_by", sa.String(110)),
        sa.Column("decision_reason", sa.Text),
        sa.Column("frozen", sa.Boolean, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
    )
    audit = op.create_table(
        "order_audit",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("order_id", sa.String(100), nullable=False, index=True),
        sa.Column("at", WHEN, nullable=False),
        sa.Column("cause_type", sa.String(100), nullable=False),
        sa.Column("cause_message_id", sa.String(36), nullable=False),
        sa.Column("from_status", sa.String(30)),
        sa.Column("to_status", sa.String(30)),
        sa.Column("sent", sa.Text, nullable=False),
        sa.Column("note", sa.Text, nullable=False),
    )
    assert audit is not None
    op.execute(
        "INSERT INTO order_audit (order_id, at, cause_type, cause_message_id, from_status, to_status, sent, note) "
        "SELECT order_id, at, cause_type, cause_message_id, from_status, to_status, '', '' FROM order_transitions "
        "ORDER BY id"
    )
    op.drop_table("order_transitions")


def downgrade() -> None:
    op.create_table(
        "order_transitions",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("order_id", sa.String(100), nullable=False, index=True),
        sa.Column("from_status", sa.String(30)),
        sa.Column("to_status", sa.String(30), nullable=False),
        sa.Column("cause_type", sa.String(100), nullable=False),
        sa.Column("cause_message_id", sa.String(36), nullable=False),
        sa.Column("at", WHEN, nullable=False),
    )
    op.execute(
        "INSERT INTO order_transitions (order_id, from_status, to_status, cause_type, cause_message_id, at) "
        "SELECT order_id, from_status, to_status, cause_type, cause_message_id, at FROM order_audit "
        "WHERE to_status IS NOT NULL AND (from_status IS NULL OR from_status <> to_status) ORDER BY id"
    )
    op.drop_table("order_audit")
    op.drop_table("order_disputes")
    with op.batch_alter_table("order_refunds") as batch:
        batch.drop_column("dispute_id")
    with op.batch_alter_table("orders") as batch:
        batch.drop_index("ix_orders_next_due_at")
        for column in (
            "actions",
            "next_due_at",
            "timers",
            "attention",
            "refund_retry",
            "refund_attempt",
            "release_after_refund",
            "dispute_id",
            "protection_extended",
            "release_at",
            "pay_by",
            "attempt",
            "shipping_method",
        ):
            batch.drop_column(column)
