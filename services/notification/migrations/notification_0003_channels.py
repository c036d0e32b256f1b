"""N1 and N2: rendered notices (subject, text, HTML, language), read marks, recipients and their
preferences, the orders' read copies, email deliveries and the email worker's send log.

Revision ID: notification_0003
"""

import uuid

import sqlalchemy as sa
from alembic import op

revision = "notification_0003"
down_revision = "notification_0002"
branch_labels = None
depends_on = None

_NAMESPACE = uuid.UUID("5d3c6f3e-6a7b-4f0c-9a43-2f4f1a7e0b11")  # services/notification/domain/rules.py


def upgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.add_column(sa.Column("notification_id", sa.String(36), nullable=True))
        batch.add_column(sa.Column("category", sa.String(20), nullable=False, server_default="transactional"))
        batch.add_column(sa.Column("order_id", sa.String(100), nullable=True))
        batch.add_column(sa.Column("language", sa.String(12), nullable=False, server_default="en"))
        batch.add_column(sa.Column("subject", sa.Text, nullable=False, server_default=""))
        batch.add_column(sa.Column("html", sa.Text, nullable=False, server_default=""))
        batch.add_column(sa.Column("read_at", sa.DateTime(timezone=True), nullable=True))
    table = sa.table(
        "notifications",
        sa.column("id", sa.Integer),
        sa.column("recipient_id", sa.String),
        sa.column("kind", sa.String),
        sa.column("reference", sa.String),
        sa.column("notification_id", sa.String),
    )
    connection = op.get_bind()
    for row in connection.execute(sa.select(table.c.id, table.c.recipient_id, table.c.kind, table.c.reference)):
        derived = uuid.uuid5(_NAMESPACE, f"{row.recipient_id}|{row.kind}|{row.reference}")
        connection.execute(table.update().where(table.c.id == row.id).values(notification_id=str(derived)))
    with op.batch_alter_table("notifications") as batch:
        batch.alter_column("notification_id", existing_type=sa.String(36), nullable=False)
        batch.create_unique_constraint("uq_notification_id", ["notification_id"])
    op.create_table(
        "notification_recipients",
        sa.Column("account_id", sa.String(100), primary_key=True),
        sa.Column("language", sa.String(12), nullable=False),
        sa.Column("full_name", sa.String(200), nullable=True),
        sa.Column("email", sa.String(254), nullable=True),
        sa.Column("email_enabled", sa.Boolean, nullable=False),
        sa.Column("marketing_enabled", sa.Boolean, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "notification_orders",
        sa.Column("order_id", sa.String(100), primary_key=True),
        sa.Column("status", sa.String(20), nullable=True),
        sa.Column("card_brand", sa.String(20), nullable=True),
        sa.Column("card_last4", sa.String(4), nullable=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "email_deliveries",
        sa.Column("notification_id", sa.String(36), primary_key=True),
        sa.Column("recipient_id", sa.String(100), nullable=False, index=True),
        sa.Column("address", sa.String(254), nullable=False),
        sa.Column("message_id", sa.String(120), nullable=False),
        sa.Column("kind", sa.String(50), nullable=False),
        sa.Column("order_id", sa.String(100), nullable=True),
        sa.Column("state", sa.String(20), nullable=False, index=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(500), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "email_send_log",
        sa.Column("notification_id", sa.String(36), primary_key=True),
        sa.Column("message_id", sa.String(120), nullable=False),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("email_send_log")
    op.drop_table("email_deliveries")
    op.drop_table("notification_orders")
    op.drop_table("notification_recipients")
    with op.batch_alter_table("notifications") as batch:
        batch.drop_constraint("uq_notification_id", type_="unique")
        for column in ("read_at", "html", "subject", "language", "order_id", "category", "notification_id"):
            batch.drop_column(column)
