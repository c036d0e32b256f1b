"""Orders and their refunds (versioned aggregates) and the orders' transition history (a journal)."""

from __future__ import annotations

import sqlalchemy as sa

from services.saga.domain import Order, Refund
from shared.aggregates import Aggregate, Journal

metadata = sa.MetaData()

orders = sa.Table(
    "orders",
    metadata,
    sa.Column("order_id", sa.String(100), primary_key=True),
    sa.Column("buyer_id", sa.String(100), nullable=False),
    sa.Column("seller_id", sa.String(100), nullable=False),
    sa.Column("amount_minor", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("marketplace_id", sa.String(100), nullable=False),
    sa.Column("source_id", sa.String(64)),
    sa.Column("security_method", sa.String(10)),
    sa.Column("security_proof", sa.Text),
    sa.Column("use_balance_first", sa.Boolean, nullable=False),
    sa.Column("quote_id", sa.String(100)),
    sa.Column("status", sa.String(30), nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("returned_minor", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("refunded_minor", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("refunding", sa.String(100)),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

refunds = sa.Table(
    "order_refunds",
    metadata,
    sa.Column("order_id", sa.String(100), primary_key=True),
    sa.Column("refund_id", sa.String(100), primary_key=True),
    sa.Column("amount_minor", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("reason", sa.String(200), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("failure", sa.Text),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

transitions = sa.Table(
    "order_transitions",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("order_id", sa.String(100), nullable=False, index=True),
    sa.Column("from_status", sa.String(30)),
    sa.Column("to_status", sa.String(30), nullable=False),
    sa.Column("cause_type", sa.String(100), nullable=False),
    sa.Column("cause_message_id", sa.String(36), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
)

ORDERS = Aggregate(Order, orders, key="order_id", money={"amount": ("amount_minor", "currency")})
REFUNDS = Aggregate(Refund, refunds, key=("order_id", "refund_id"), money={"amount": ("amount_minor", "currency")})
TRANSITIONS = Journal(transitions)
