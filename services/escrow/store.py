"""Escrow holds, the refunds' returns and the append-only ledger: tables, declarations and the books' queries."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from services.escrow.domain import EscrowHold, FundsReturn
from shared.aggregates import Aggregate, Journal

metadata = sa.MetaData()

holds = sa.Table(
    "escrow_holds",
    metadata,
    sa.Column("order_id", sa.String(100), primary_key=True),
    sa.Column("buyer_id", sa.String(100), nullable=False),
    sa.Column("seller_id", sa.String(100), nullable=False),
    sa.Column("amount_minor", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("returned_minor", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

returns = sa.Table(
    "escrow_returns",
    metadata,
    sa.Column("order_id", sa.String(100), primary_key=True),
    sa.Column("refund_id", sa.String(100), primary_key=True),
    sa.Column("amount_minor", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("still_held_minor", sa.BigInteger, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

ledger = sa.Table(
    "ledger_entries",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("transfer_id", sa.String(36), nullable=False, index=True),
    sa.Column("order_id", sa.String(100), nullable=False, index=True),
    sa.Column("account", sa.String(150), nullable=False),
    sa.Column("amount_minor", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

HOLDS = Aggregate(EscrowHold, holds, key="order_id", money={"amount": ("amount_minor", "currency")})
# Both amounts of a return are in the hold's one currency: they share its column.
RETURNS = Aggregate(
    FundsReturn,
    returns,
    key=("order_id", "refund_id"),
    money={"amount": ("amount_minor", "currency"), "still_held": ("still_held_minor", "currency")},
)
LEDGER = Journal(ledger)


async def balance(connection: AsyncConnection, account: str, *, order_id: str | None = None) -> int:
    """Sum of a ledger account's entries (for one order if given), in minor units (tests, audit)."""
    query = sa.select(sa.func.coalesce(sa.func.sum(ledger.c.amount_minor), 0)).where(ledger.c.account == account)
    if order_id is not None:
        query = query.where(ledger.c.order_id == order_id)
    return int((await connection.execute(query)).scalar_one())
