"""Payments, one row per order: table and aggregate declaration."""

from __future__ import annotations

import sqlalchemy as sa

from services.payment.domain.payments import Payment
from shared.aggregates import Aggregate

metadata = sa.MetaData()

payments = sa.Table(
    "payments",
    metadata,
    sa.Column("order_id", sa.String(100), primary_key=True),
    sa.Column("buyer_id", sa.String(100), nullable=False),
    sa.Column("amount_minor", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("failure_reason", sa.String(50)),
    sa.Column("failure_detail", sa.Text),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

PAYMENTS = Aggregate(Payment, payments, key="order_id", money={"amount": ("amount_minor", "currency")})
