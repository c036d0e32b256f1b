"""In-app notifications.

Revision ID: notification_0001
"""

import sqlalchemy as sa
from alembic import op

revision = "notification_0001"
down_revision = None
branch_labels = ("notification",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "notifications",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("recipient_id", sa.String(100), nullable=False, index=True),
        sa.Column("kind", sa.String(50), nullable=False),
        sa.Column("reference", sa.String(200), nullable=False),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("correlation_id", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("recipient_id", "kind", "reference", name="uq_notification_once"),
    )


def downgrade() -> None:
    op.drop_table("notifications")
