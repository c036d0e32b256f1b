"""Every aggregate row carries a version (optimistic concurrency); movements get updated_at.

Revision ID: account_0002
"""

import sqlalchemy as sa
from alembic import op

revision = "account_0002"
down_revision = "account_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("wallets") as batch:
        batch.add_column(sa.Column("version", sa.Integer, nullable=False, server_default="1"))
    with op.batch_alter_table("wallet_movements") as batch:
        batch.add_column(sa.Column("version", sa.Integer, nullable=False, server_default="1"))
        batch.add_column(sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE wallet_movements SET updated_at = created_at")
    with op.batch_alter_table("wallet_movements") as batch:
        batch.alter_column("updated_at", existing_type=sa.DateTime(timezone=True), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("wallet_movements") as batch:
        batch.drop_column("updated_at")
        batch.drop_column("version")
    with op.batch_alter_table("wallets") as batch:
        batch.drop_column("version")
