"""Orders, their refunds and disputes (versioned aggregates) and the orders' audit trail (a journal)."""

from __future__ import annotations

import sqlalchemy as sa

from services.saga.domain import Dispute, Order, Refund
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
    sa.Column("shipping_method", sa.String(40)),
    sa.Column("attempt", sa.Integer, nullable=False, server_default="1"),
    sa.Column("pay_by", sa.DateTime(timezone=True)),
    sa.Column("release_at", sa.DateTime(timezone=True)),
    sa.Column("protection_extended", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("dispute_id", sa.String(100)),
    sa.Column("release_after_refund", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("refund_attempt", sa.Integer, nullable=False, server_default="0"),
    sa.Column("refund_retry", sa.JSON),
    sa.Column("attention", sa.Text),
    sa.Column("timers", sa.JSON, nullable=False),
    sa.Column("next_due_at", sa.DateTime(timezone=True), index=True),
    sa.Column("actions", sa.JSON, nullable=False),
    sa.Column("sent", sa.JSON, nullable=False, server_default=sa.text("'{}'")),
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
    sa.Column("dispute_id", sa.String(100)),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

disputes = sa.Table(
    "order_disputes",
    metadata,
    sa.Column("order_id", sa.String(100), primary_key=True),
    sa.Column("dispute_id", sa.String(100), nullable=False),
    sa.Column("buyer_id", sa.String(100), nullable=False),
    sa.Column("reason", sa.String(30), nullable=False),
    sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("answer_by", sa.DateTime(timezone=True), nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("evidence", sa.JSON, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("statement", sa.Text),
    sa.Column("seller_evidence", sa.JSON, nullable=False),
    sa.Column("resolution", sa.String(20)),
    sa.Column("refund_minor", sa.BigInteger),
    sa.Column("refund_currency", sa.String(3)),
    sa.Column("decided_by", sa.String(110)),
    sa.Column("decision_reason", sa.Text),
    sa.Column("frozen", sa.Boolean, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

# S6: one row per message that did something to an order (or was found late or duplicate):
# what came in, the status change, what was sent, and a note (timers set or fired, retries).
audit = sa.Table(
    "order_audit",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("order_id", sa.String(100), nullable=False, index=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("cause_type", sa.String(100), nullable=False),
    sa.Column("cause_message_id", sa.String(36), nullable=False),
    sa.Column("from_status", sa.String(30)),
    sa.Column("to_status", sa.String(30)),
    sa.Column("sent", sa.Text, nullable=False),
    sa.Column("note", sa.Text, nullable=False),
)

ORDERS = Aggregate(Order, orders, key="order_id", money={"amount": ("amount_minor", "currency")})
REFUNDS = Aggregate(Refund, refunds, key=("order_id", "refund_id"), money={"amount": ("amount_minor", "currency")})
DISPUTES = Aggregate(Dispute, disputes, key="order_id")
AUDIT = Journal(audit)
