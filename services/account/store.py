"""The account service's tables and aggregate declarations: accounts and their phone claims,
identity reviews, funding sources, marketplace grants, wallets and their movements."""

from __future__ import annotations

import sqlalchemy as sa

from services.account.domain.accounts import Account
from services.account.domain.bindings import MarketplaceGrant
from services.account.domain.funding_sources import StoredSource
from services.account.domain.phones import PhoneClaim
from services.account.domain.verification import IdentityReview
from services.account.domain.wallets import Movement, Wallet
from shared.aggregates import Aggregate, Journal

metadata = sa.MetaData()
_ID = 100
_WHEN = sa.DateTime(timezone=True)

accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("account_id", sa.String(_ID), primary_key=True),
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
    sa.Column("phone_code_expires_at", _WHEN),
    sa.Column("phone_code_attempts", sa.Integer, nullable=False),
    sa.Column("phone_codes_sent", sa.Integer, nullable=False),
    sa.Column("failed_checks", sa.Integer, nullable=False),
    sa.Column("recent_failures", sa.String(200), nullable=False),
    sa.Column("known_countries", sa.String(400), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("created_at", _WHEN, nullable=False),
    sa.Column("updated_at", _WHEN, nullable=False),
)

phone_claims = sa.Table(
    "phone_claims",
    metadata,
    sa.Column("phone", sa.String(32), primary_key=True),
    sa.Column("account_id", sa.String(_ID), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("created_at", _WHEN, nullable=False),
)

identity_reviews = sa.Table(
    "identity_reviews",
    metadata,
    sa.Column("account_id", sa.String(_ID), primary_key=True),
    sa.Column("level", sa.String(2), primary_key=True),
    sa.Column("legal_name", sa.String(200), nullable=False),
    sa.Column("document_type", sa.String(20), nullable=False),
    sa.Column("document_digest", sa.String(64), nullable=False),
    sa.Column("document_masked", sa.String(40), nullable=False),
    sa.Column("birth_date", sa.Date, nullable=False),
    sa.Column("country", sa.String(2), nullable=False),
    sa.Column("address", sa.String(500)),
    sa.Column("submitted_at", _WHEN, nullable=False),
    sa.Column("status", sa.String(12), nullable=False),
    sa.Column("reasons", sa.String(400), nullable=False),
    sa.Column("reviewed_by", sa.String(_ID)),
    sa.Column("submissions", sa.Integer, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("updated_at", _WHEN, nullable=False),
)

funding_sources = sa.Table(
    "funding_sources",
    metadata,
    sa.Column("account_id", sa.String(_ID), primary_key=True),
    sa.Column("source_id", sa.String(64), primary_key=True),
    sa.Column("type", sa.String(20), nullable=False),
    sa.Column("token", sa.String(64), nullable=False),
    sa.Column("last4", sa.String(4), nullable=False),
    sa.Column("brand", sa.String(20)),
    sa.Column("expiry_month", sa.Integer),
    sa.Column("expiry_year", sa.Integer),
    sa.Column("country", sa.String(2)),
    sa.Column("removed_at", _WHEN),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("created_at", _WHEN, nullable=False),
    sa.Column("updated_at", _WHEN, nullable=False),
)

marketplace_grants = sa.Table(
    "marketplace_grants",
    metadata,
    sa.Column("account_id", sa.String(_ID), primary_key=True),
    sa.Column("marketplace_id", sa.String(_ID), primary_key=True),
    sa.Column("scopes", sa.String(100), nullable=False),
    sa.Column("expires_at", _WHEN, nullable=False),
    sa.Column("granted_at", _WHEN, nullable=False),
    sa.Column("revoked_at", _WHEN),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("updated_at", _WHEN, nullable=False),
)

account_audit = sa.Table(
    "account_audit",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("account_id", sa.String(_ID), nullable=False, index=True),
    sa.Column("action", sa.String(40), nullable=False),
    sa.Column("actor", sa.String(_ID), nullable=False),
    sa.Column("detail", sa.String(500), nullable=False),
    sa.Column("at", _WHEN, nullable=False),
)

wallets = sa.Table(
    "wallets",
    metadata,
    sa.Column("account_id", sa.String(_ID), primary_key=True),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("balance_minor", sa.BigInteger, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("updated_at", _WHEN, nullable=False),
)

movements = sa.Table(
    "wallet_movements",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("account_id", sa.String(_ID), nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("reference", sa.String(200), nullable=False),
    sa.Column("amount_minor", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("balance_after_minor", sa.BigInteger, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("created_at", _WHEN, nullable=False),
    sa.Column("updated_at", _WHEN, nullable=False),
    sa.UniqueConstraint("account_id", "kind", "reference", name="uq_movement_reference"),
)

ACCOUNTS = Aggregate(Account, accounts, key="account_id")
PHONE_CLAIMS = Aggregate(PhoneClaim, phone_claims, key="phone")
IDENTITY_REVIEWS = Aggregate(IdentityReview, identity_reviews, key=("account_id", "level"))
FUNDING_SOURCES = Aggregate(StoredSource, funding_sources, key=("account_id", "source_id"))
GRANTS = Aggregate(MarketplaceGrant, marketplace_grants, key=("account_id", "marketplace_id"))
AUDIT = Journal(account_audit)
WALLETS = Aggregate(Wallet, wallets, key="account_id", money={"balance": ("balance_minor", "currency")})
MOVEMENTS = Aggregate(
    Movement,
    movements,
    key=("account_id", "kind", "reference"),
    money={"amount": ("amount_minor", "currency"), "balance_after": ("balance_after_minor", "currency")},
)
