"""Payments, one row per order."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from contracts import Money
from services.payment.domain import Payment, PaymentStatus

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
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)


_SELECT_PAYMENT = sa.select(payments).where(payments.c.order_id == sa.bindparam("key"))
_INSERT_PAYMENT = payments.insert()
_UPDATE_PAYMENT = payments.update().where(payments.c.order_id == sa.bindparam("key"))


class PaymentStore:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def get(self, order_id: str) -> Payment | None:
        row = (await self._connection.execute(_SELECT_PAYMENT, {"key": order_id})).first()
        if row is None:
            return None
        return Payment(
            order_id=row.order_id,
            buyer_id=row.buyer_id,
            amount=Money(amount_minor=row.amount_minor, currency=row.currency),
            status=PaymentStatus(row.status),
            failure_reason=row.failure_reason,
            failure_detail=row.failure_detail,
        )

    async def add(self, payment: Payment) -> None:
        now = datetime.now(UTC)
        await self._connection.execute(
            _INSERT_PAYMENT,
            {
                "order_id": payment.order_id,
                "buyer_id": payment.buyer_id,
                "amount_minor": payment.amount.amount_minor,
                "currency": payment.amount.currency,
                "status": payment.status.value,
                "created_at": now,
                "updated_at": now,
            },
        )

    async def save_outcome(self, payment: Payment) -> None:
        await self._connection.execute(
            _UPDATE_PAYMENT,
            {
                "key": payment.order_id,
                "status": payment.status.value,
                "failure_reason": payment.failure_reason,
                "failure_detail": payment.failure_detail,
                "updated_at": datetime.now(UTC),
            },
        )
