"""Refund retries (S3) and inquiries that prove nothing (P4): a failed refund is tried again
under its own id (``attempt``), and a request whose last attempt's outcome is unknown keeps
asking its status with a growing backoff (``inquiries``). Rows from before are attempt 1 and
have asked nothing.

Revision ID: payment_0007
"""

import sqlalchemy as sa
from alembic import op

revision = "payment_0007"
down_revision = "payment_0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("refunds") as batch:
        batch.add_column(sa.Column("attempt", sa.Integer, nullable=False, server_default="1"))
    with op.batch_alter_table("network_requests") as batch:
        batch.add_column(sa.Column("inquiries", sa.Integer, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("network_requests") as batch:
        batch.drop_column("inquiries")
    with op.batch_alter_table("refunds") as batch:
        batch.drop_column("attempt")
