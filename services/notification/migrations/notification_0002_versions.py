"""Notifications are versioned aggregates; the channel column goes until channels exist (N2).

Revision ID: notification_0002
"""

import sqlalchemy as sa
from alembic import op

revision = "notification_0002"
down_revision = "notification_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.add_column(sa.Column("version", sa.Integer, nullable=False, server_default="1"))
        batch.add_column(sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True))
        batch.drop_column("channel")
    op.execute("UPDATE notifications SET updated_at = created_at")
    with op.batch_alter_table("notifications") as batch:
        batch.alter_column("updated_at", existing_type=sa.DateTime(timezone=True), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.add_column(sa.Column("channel", sa.String(20), nullable=False, server_default="in_app"))
        batch.drop_column("updated_at")
        batch.drop_column("version")
