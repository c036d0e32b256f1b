"""Wallets and their append-only movements: tables and aggregate declarations."""

from __future__ import annotations

import sqlalchemy as sa

from services.account.domain import Movement, Wallet
from shared.aggregates import Aggregate

metadata = sa.MetaData()

wallets = sa.Table(
    "wallets",
    metadata,
    sa.Column("account_id", sa.String(100), primary_key=True),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("balance_minor", sa.BigInteger, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

movements = sa.Table(
    "wallet_movements",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("account_id", sa.String(100), nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("reference", sa.String(200), nullable=False),
    sa.Column("amount_minor", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("balance_after_minor", sa.BigInteger, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("account_id", "kind", "reference", name="uq_movement_reference"),
)

WALLETS = Aggregate(Wallet, wallets, key="account_id", money={"balance": ("balance_minor", "currency")})
MOVEMENTS = Aggregate(
    Movement,
    movements,
    key=("account_id", "kind", "reference"),
    money={"amount": ("amount_minor", "currency"), "balance_after": ("balance_after_minor", "currency")},
)
