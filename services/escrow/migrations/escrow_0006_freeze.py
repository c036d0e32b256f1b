"""E3: a hold frozen by a dispute (which dispute, since when), and the dispute each return was
given back for (so a repeat of a refund for another dispute is told apart).

Revision ID: escrow_0006
"""

import sqlalchemy as sa
from alembic import op

revision = "escrow_0006"
down_revision = "escrow_0005"
branch_labels = None
depends_on = None

WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("escrow_holds") as batch:
        batch.add_column(sa.Column("frozen_by", sa.String(100), nullable=True))
        batch.add_column(sa.Column("frozen_at", WHEN, nullable=True))
    with op.batch_alter_table("escrow_returns") as batch:
        batch.add_column(sa.Column("dispute_id", sa.String(100), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("escrow_returns") as batch:
        batch.drop_column("dispute_id")
    with op.batch_alter_table("escrow_holds") as batch:
        batch.drop_column("frozen_at")
        batch.drop_column("frozen_by")
