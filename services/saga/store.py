"""Orders (optimistic concurrency on ``version``) and their transition history."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from contracts import Money, OrderStatus
from services.saga.domain import Order, Step

metadata = sa.MetaData()

orders = sa.Table(
    "orders",
    metadata,
    sa.Column("order_id", sa.String(100), primary_key=True),
    sa.Column("buyer_id", sa.String(100), nullable=False),
    sa.Column("seller_id", sa.String(100), nullable=False),
    sa.Column("amount_minor", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("status", sa.String(30), nullable=False),
    sa.Column("reason", sa.Text),
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


_SELECT_ORDER = sa.select(orders).where(orders.c.order_id == sa.bindparam("key"))
_INSERT_ORDER = orders.insert()
# Optimistic concurrency: the update only applies to the version that was read.
_UPDATE_ORDER = orders.update().where(
    orders.c.order_id == sa.bindparam("key"), orders.c.version == sa.bindparam("read_version")
)
_INSERT_TRANSITION = transitions.insert()


class StaleOrder(Exception):
    """Someone else saved the order since it was read; the message is retried."""


class OrderStore:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def get(self, order_id: str) -> Order | None:
        row = (await self._connection.execute(_SELECT_ORDER, {"key": order_id})).first()
        if row is None:
            return None
        return Order(
            order_id=row.order_id,
            buyer_id=row.buyer_id,
            seller_id=row.seller_id,
            amount=Money(amount_minor=row.amount_minor, currency=row.currency),
            status=OrderStatus(row.status),
            reason=row.reason,
            version=row.version,
        )

    async def add(self, order: Order) -> None:
        now = datetime.now(UTC)
        await self._connection.execute(
            _INSERT_ORDER,
            {
                "order_id": order.order_id,
                "buyer_id": order.buyer_id,
                "seller_id": order.seller_id,
                "amount_minor": order.amount.amount_minor,
                "currency": order.amount.currency,
                "status": order.status.value,
                "reason": order.reason,
                "version": 1,
                "created_at": now,
                "updated_at": now,
            },
        )
        order.version = 1

    async def save(self, order: Order) -> None:
        result = await self._connection.execute(
            _UPDATE_ORDER,
            {
                "key": order.order_id,
                "read_version": order.version,
                "status": order.status.value,
                "reason": order.reason,
                "version": order.version + 1,
                "updated_at": datetime.now(UTC),
            },
        )
        if result.rowcount != 1:
            msg = f"order {order.order_id} changed since version {order.version}"
            raise StaleOrder(msg)
        order.version += 1

    async def record_transition(self, order_id: str, step: Step, cause_type: str, cause_message_id: str) -> None:
        assert step.to_status is not None
        await self._connection.execute(
            _INSERT_TRANSITION,
            {
                "order_id": order_id,
                "from_status": step.from_status.value if step.from_status else None,
                "to_status": step.to_status.value,
                "cause_type": cause_type,
                "cause_message_id": cause_message_id,
                "at": datetime.now(UTC),
            },
        )
