"""Service stores against real databases (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts import Money
from services.notification.app import DEFINITION as NOTIFICATION
from services.notification.domain import Notice, NoticeKind
from services.notification.store import NotificationStore, notifications
from services.saga.app import DEFINITION as SAGA
from services.saga.domain import Order
from services.saga.store import OrderStore, StaleOrder
from shared.db import migrate


async def test_a_notification_is_recorded_once_per_recipient_and_step(engine: AsyncEngine) -> None:
    await migrate(engine, NOTIFICATION.migrations)
    notice = Notice("buyer-1", NoticeKind.FUNDS_HELD, "order-1", "held")

    async with engine.begin() as conn:
        first = await NotificationStore(conn).add_once(notice, "order-1")
        again = await NotificationStore(conn).add_once(notice, "order-1")
        other_step = await NotificationStore(conn).add_once(
            Notice("buyer-1", NoticeKind.ORDER_COMPLETED, "order-1", "done"), "order-1"
        )

    assert (first, again, other_step) == (True, False, True)
    async with engine.connect() as conn:
        assert (await conn.execute(sa.select(sa.func.count()).select_from(notifications))).scalar_one() == 2


async def test_a_stale_order_is_not_overwritten(engine: AsyncEngine) -> None:
    await migrate(engine, SAGA.migrations)
    order = Order("order-1", "b", "s", Money(amount_minor=100, currency="USD"))
    async with engine.begin() as conn:
        await OrderStore(conn).add(order)

    async with engine.begin() as conn:
        store = OrderStore(conn)
        first, second = await store.get("order-1"), await store.get("order-1")
        assert first is not None
        assert second is not None
        first.payment_captured()
        await store.save(first)
        second.payment_failed("late")
        with pytest.raises(StaleOrder, match="changed since version 1"):
            await store.save(second)
