"""Accounts (A1-A6): the account, its phone claim, identity reviews, funding sources,
marketplace grants and the audit trail of operator and security actions.

Revision ID: account_0003
"""

import sqlalchemy as sa
from alembic import op

revision = "account_0003"
down_revision = "account_0002"
branch_labels = None
depends_on = None

WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("account_id", sa.String(100), primary_key=True),
        sa.Column("phone", sa.String(32), nullable=False),
        sa.Column("full_name", sa.String(200), nullable=False),
        sa.Column("country", sa.String(2), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("language", sa.String(12), nullable=False),
        sa.Column("password_hash", sa.String(200), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("level", sa.String(2), nullable=False),
        sa.Column("legal_name", sa.String(200)),
        sa.Column("pin_hash", sa.String(200)),
        sa.Column("totp_secret_box", sa.String(300)),
        sa.Column("default_source_id", sa.String(64)),
        sa.Column("phone_code_digest", sa.String(64)),
        sa.Column("phone_code_expires_at", WHEN),
        sa.Column("phone_code_attempts", sa.Integer, nullable=False),
        sa.Column("phone_codes_sent", sa.Integer, nullable=False),
        sa.Column("failed_checks", sa.Integer, nullable=False),
        sa.Column("recent_failures", sa.String(200), nullable=False),
        sa.Column("known_countries", sa.String(400), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
    )
    op.create_table(
        "phone_claims",
        sa.Column("phone", sa.String(32), primary_key=True),
        sa.Column("account_id", sa.String(100), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
    )
    op.create_table(
        "identity_reviews",
        sa.Column("account_id", sa.String(100), primary_key=True),
        sa.Column("level", sa.String(2), primary_key=True),
        sa.Column("legal_name", sa.String(200), nullable=False),
        sa.Column("document_type", sa.String(20), nullable=False),
        sa.Column("document_digest", sa.String(64), nullable=False),
        sa.Column("document_masked", sa.String(40), nullable=False),
        sa.Column("birth_date", sa.Date, nullable=False),
        sa.Column("country", sa.String(2), nullable=False),
        sa.Column("address", sa.String(500)),
        sa.Column("submitted_at", WHEN, nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("reasons", sa.String(400), nullable=False),
        sa.Column("reviewed_by", sa.String(100)),
        sa.Column("submissions", sa.Integer, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
    )
    op.create_table(
        "funding_sources",
        sa.Column("account_id", sa.String(100), primary_key=True),
        sa.Column("source_id", sa.String(64), primary_key=True),
        sa.Column("type", sa.String(20), nullable=False),
        sa.Column("token", sa.String(64), nullable=False),
        sa.Column("last4", sa.String(4), nullable=False),
        sa.Column("brand", sa.String(20)),
        sa.Column("expiry_month", sa.Integer),
        sa.Column("expiry_year", sa.Integer),
        sa.Column("country", sa.String(2)),
        sa.Column("removed_at", WHEN),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
    )
    op.create_table(
        "marketplace_grants",
        sa.Column("account_id", sa.String(100), primary_key=True),
        sa.Column("marketplace_id", sa.String(100), primary_key=True),
        sa.Column("scopes", sa.String(100), nullable=False),
        sa.Column("expires_at", WHEN, nullable=False),
        sa.Column("granted_at", WHEN, nullable=False),
        sa.Column("revoked_at", WHEN),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
    )
    op.create_table(
        "account_audit",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("account_id", sa.String(100), nullable=False, index=True),
        sa.Column("action", sa.String(40), nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("detail", sa.String(500), nullable=False),
        sa.Column("at", WHEN, nullable=False),
    )


def downgrade() -> None:
    for table in ("account_audit", "marketplace_grants", "funding_sources", "identity_reviews", "phone_claims"):
        op.drop_table(table)
    op.drop_table("accounts")
