"""Orders remember the quote the buyer accepted, to pass it to the payment (P3).

Revision ID: saga_0004
"""

import sqlalchemy as sa
from alembic import op

revision = "saga_0004"
down_revision = "saga_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.add_column(sa.Column("quote_id", sa.String(100)))


def downgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.drop_column("quote_id")
