"""Orders remember the message id of each escrow command they sent, to trust only the answers
it caused (X9: events only as answers). Orders from before have none: their answers are
checked by amount and parties as they were.

Revision ID: saga_0006
"""

import sqlalchemy as sa
from alembic import op

revision = "saga_0006"
down_revision = "saga_0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.add_column(sa.Column("sent", sa.JSON, nullable=False, server_default=sa.text("'{}'")))


def downgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.drop_column("sent")
