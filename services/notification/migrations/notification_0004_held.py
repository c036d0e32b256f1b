"""Issue 11: notices held until the recipient's profile arrives (released in its language, then
emailed), and what the service told of an order's payment (N1, S2).

- ``notification_recipients.has_profile``: AccountRegistered was read. Rows made by it always
  carry the name; rows made only by preferences do not.
- ``notification_recipients.held``: the notices held for the recipient, as JSON.
- ``notification_orders.captured``: PaymentCaptured was read. Before this revision it was told
  for every order that reached a paid status.
- ``email_deliveries.address`` may be empty: a held delivery has no address until its release.
- ``notification_releases``: each held notice as rendered when the profile arrived.

Revision ID: notification_0004
"""

import sqlalchemy as sa
from alembic import op

revision = "notification_0004"
down_revision = "notification_0003"
branch_labels = None
depends_on = None

_PAID = ("paid", "in_escrow", "releasing", "completed", "refunded")


def upgrade() -> None:
    with op.batch_alter_table("notification_recipients") as batch:
        batch.add_column(sa.Column("has_profile", sa.Boolean, nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("held", sa.Text, nullable=True))
    recipients = sa.table(
        "notification_recipients", sa.column("full_name", sa.String), sa.column("has_profile", sa.Boolean)
    )
    op.execute(recipients.update().where(recipients.c.full_name.is_not(None)).values(has_profile=True))
    with op.batch_alter_table("notification_orders") as batch:
        batch.add_column(sa.Column("captured", sa.Boolean, nullable=False, server_default=sa.false()))
    orders = sa.table("notification_orders", sa.column("status", sa.String), sa.column("captured", sa.Boolean))
    op.execute(orders.update().where(orders.c.status.in_(_PAID)).values(captured=True))
    with op.batch_alter_table("email_deliveries") as batch:
        batch.alter_column("address", existing_type=sa.String(254), nullable=True)
    op.create_table(
        "notification_releases",
        sa.Column("notification_id", sa.String(36), primary_key=True),
        sa.Column("recipient_id", sa.String(100), nullable=False),
        sa.Column("language", sa.String(12), nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("html", sa.Text, nullable=False),
        sa.Column("address", sa.String(254), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("notification_releases")
    op.execute("DELETE FROM email_deliveries WHERE address IS NULL")
    with op.batch_alter_table("email_deliveries") as batch:
        batch.alter_column("address", existing_type=sa.String(254), nullable=False)
    with op.batch_alter_table("notification_orders") as batch:
        batch.drop_column("captured")
    with op.batch_alter_table("notification_recipients") as batch:
        batch.drop_column("held")
        batch.drop_column("has_profile")
