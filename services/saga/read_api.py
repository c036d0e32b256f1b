"""S6, G1: the saga's orders as others may read them, paged, from the saga's own database.

``GET /orders?status=in_escrow&page=1&per_page=100`` on the service's HTTP port: orders by id
(a stable order, so a reader paging through all of them misses none), each with its parties,
its price, its status and the reason it carries, what of the price left escrow for the buyer
(``returned``) and came back to them (``refunded``), what escrow still holds for the seller
while it is in escrow (``still_held``), the refund under way (``refunding``) and when it last
moved (``updated_at``). The books audit (scripts/audit) reads this, never the saga's tables.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts import OrderStatus
from services.saga.store import orders
from shared.read_api import Page, iso

STATUSES = tuple(status.value for status in OrderStatus)


def _money(minor: int, currency: str) -> dict[str, Any]:
    return {"amount_minor": minor, "currency": currency}


def _entry(row: sa.Row[Any]) -> dict[str, Any]:
    return {
        "order_id": row.order_id,
        "buyer_id": row.buyer_id,
        "seller_id": row.seller_id,
        "amount": _money(row.amount_minor, row.currency),
        "status": row.status,
        "reason": row.reason,
        "returned": _money(row.returned_minor, row.currency),
        "refunded": _money(row.refunded_minor, row.currency),
        "still_held": _money(row.amount_minor - row.returned_minor, row.currency),
        "refunding": row.refunding,
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
    }


def _status_filter(query: Mapping[str, str]) -> str | None:
    status = query.get("status") or None
    if status is not None and status not in STATUSES:
        raise ValueError(f"status: one of {', '.join(STATUSES)}, not {status[:30]!r}")
    return status


async def list_orders(engine: AsyncEngine, query: Mapping[str, str]) -> tuple[int, Any]:
    """``GET /orders``: every order (or those of one ``status``), by order id, a page at a time."""
    try:
        status = _status_filter(query)
        page = Page.of(query, per_page=20)
    except ValueError as error:
        return 400, {"error": str(error)}
    chosen = sa.true() if status is None else orders.c.status == status
    async with engine.connect() as conn:
        total = (await conn.execute(sa.select(sa.func.count()).select_from(orders).where(chosen))).scalar_one()
        rows = (
            await conn.execute(
                sa.select(orders).where(chosen).order_by(orders.c.order_id).limit(page.per_page).offset(page.offset)
            )
        ).all()
    return 200, {
        "status": status,
        "page": page.page,
        "per_page": page.per_page,
        "total": int(total),
        "orders": [_entry(row) for row in rows],
    }
