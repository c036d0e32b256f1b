"""Orders remember the marketplace charging, the buyer's chosen source and the sealed security
proof, to pass them to the payment (A4-A6).

Revision ID: saga_0002
"""

import sqlalchemy as sa
from alembic import op

revision = "saga_0002"
down_revision = "saga_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.add_column(sa.Column("marketplace_id", sa.String(100), nullable=False, server_default=""))
        batch.add_column(sa.Column("source_id", sa.String(64)))
        batch.add_column(sa.Column("security_method", sa.String(10)))
        batch.add_column(sa.Column("security_proof", sa.Text))
        batch.add_column(sa.Column("use_balance_first", sa.Boolean, nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        for column in ("use_balance_first", "security_proof", "security_method", "source_id", "marketplace_id"):
            batch.drop_column(column)
