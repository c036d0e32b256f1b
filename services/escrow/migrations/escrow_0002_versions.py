"""Every aggregate row carries a version (optimistic concurrency).

Revision ID: escrow_0002
"""

import sqlalchemy as sa
from alembic import op

revision = "escrow_0002"
down_revision = "escrow_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("escrow_holds") as batch:
        batch.add_column(sa.Column("version", sa.Integer, nullable=False, server_default="1"))


def downgrade() -> None:
    with op.batch_alter_table("escrow_holds") as batch:
        batch.drop_column("version")
