"""Escrow holds and the append-only ledger."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from contracts import Money
from services.escrow.domain import EscrowHold, HoldStatus, Transfer

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


_SELECT_HOLD = sa.select(holds).where(holds.c.order_id == sa.bindparam("key"))
_INSERT_HOLD = holds.insert()
_UPDATE_HOLD = holds.update().where(holds.c.order_id == sa.bindparam("key"))
_INSERT_ENTRY = ledger.insert()


class EscrowStore:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def get(self, order_id: str) -> EscrowHold | None:
        row = (await self._connection.execute(_SELECT_HOLD, {"key": order_id})).first()
        if row is None:
            return None
        return EscrowHold(
            order_id=row.order_id,
            buyer_id=row.buyer_id,
            seller_id=row.seller_id,
            amount=Money(amount_minor=row.amount_minor, currency=row.currency),
            status=HoldStatus(row.status),
        )

    async def add(self, hold: EscrowHold, transfer: Transfer) -> None:
        now = datetime.now(UTC)
        await self._connection.execute(
            _INSERT_HOLD,
            {
                "order_id": hold.order_id,
                "buyer_id": hold.buyer_id,
                "seller_id": hold.seller_id,
                "amount_minor": hold.amount.amount_minor,
                "currency": hold.amount.currency,
                "status": hold.status.value,
                "created_at": now,
                "updated_at": now,
            },
        )
        await self._record(transfer, now)

    async def save_release(self, hold: EscrowHold, transfer: Transfer) -> None:
        now = datetime.now(UTC)
        await self._connection.execute(
            _UPDATE_HOLD, {"key": hold.order_id, "status": hold.status.value, "updated_at": now}
        )
        await self._record(transfer, now)

    async def _record(self, transfer: Transfer, now: datetime) -> None:
        transfer_id = str(uuid.uuid4())
        common = {
            "transfer_id": transfer_id,
            "order_id": transfer.order_id,
            "currency": transfer.amount.currency,
            "created_at": now,
        }
        await self._connection.execute(
            _INSERT_ENTRY,
            [
                {**common, "account": transfer.from_account, "amount_minor": -transfer.amount.amount_minor},
                {**common, "account": transfer.to_account, "amount_minor": transfer.amount.amount_minor},
            ],
        )

    async def balance(self, account: str, *, order_id: str | None = None) -> int:
        """Sum of a ledger account's entries (for one order if given), in minor units."""
        query = sa.select(sa.func.coalesce(sa.func.sum(ledger.c.amount_minor), 0)).where(ledger.c.account == account)
        if order_id is not None:
            query = query.where(ledger.c.order_id == order_id)
        return int((await self._connection.execute(query)).scalar_one())
