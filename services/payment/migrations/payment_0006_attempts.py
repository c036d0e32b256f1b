"""Payment attempts (S2): the attempt each payment row describes, so the saga may try an order's
payment again after a failure; rows from before attempts describe attempt 1.

Revision ID: payment_0006
"""

import sqlalchemy as sa
from alembic import op

revision = "payment_0006"
down_revision = "payment_0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("payments") as batch:
        batch.add_column(sa.Column("attempt", sa.Integer, nullable=False, server_default="1"))


def downgrade() -> None:
    with op.batch_alter_table("payments") as batch:
        batch.drop_column("attempt")
