"""S6, G1: the saga's orders as others may read them, from the saga's own database.

``GET /order?order_id=...``: one order with its refunds, its dispute and its audit trail
(every message that did something to it, with the status change, what was sent and a note);
``GET /orders/stuck?minutes=30``: the orders an operator should look at (retrying,
compensating, waiting on an operator, or without progress for that long), counted by reason.

``GET /orders?status=in_escrow&page=1&per_page=100`` on the service's HTTP port: orders by id
(a stable order, so a reader paging through all of them misses none), each with its parties,
its price, its status and the reason it carries, what of the price left escrow for the buyer
(``returned``) and came back to them (``refunded``), what escrow still holds for the seller
while it is in escrow (``still_held``), the refund under way (``refunding``) and when it last
moved (``updated_at``). The books audit (scripts/audit) reads this, never the saga's tables.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts import OrderStatus
from services.saga.domain.lifecycle import FINAL
from services.saga.domain.timers import next_due
from services.saga.store import audit, disputes, orders, refunds
from shared.clock import Clock
from shared.db import reading
from shared.read_api import Page, iso, positive

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
        "attempt": row.attempt,
        "shipping_method": row.shipping_method,
        "pay_by": iso(row.pay_by),
        "release_at": iso(row.release_at),
        "protection_extended": row.protection_extended,
        "dispute_id": row.dispute_id,
        "attention": row.attention,
        "timers": dict(row.timers or {}),
        "next_deadline": _next_deadline(row.timers or {}),
        "next_deadline_at": iso(row.next_due_at),
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
    }


def _next_deadline(stored: Mapping[str, str]) -> str | None:
    upcoming = next_due(dict(stored))
    return None if upcoming is None else upcoming[0].value


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
    async with reading(engine) as conn:
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


def _refund(row: sa.Row[Any]) -> dict[str, Any]:
    return {
        "refund_id": row.refund_id,
        "amount": _money(row.amount_minor, row.currency),
        "reason": row.reason,
        "status": row.status,
        "failure": row.failure,
        "dispute_id": row.dispute_id,
        "updated_at": iso(row.updated_at),
    }


def _dispute(row: sa.Row[Any]) -> dict[str, Any]:
    return {
        "dispute_id": row.dispute_id,
        "reason": row.reason,
        "status": row.status,
        "opened_at": iso(row.opened_at),
        "answer_by": iso(row.answer_by),
        "description": row.description,
        "evidence": list(row.evidence or []),
        "statement": row.statement,
        "seller_evidence": list(row.seller_evidence or []),
        "resolution": row.resolution,
        "refund": None if row.refund_minor is None else _money(row.refund_minor, row.refund_currency),
        "decided_by": row.decided_by,
        "decision_reason": row.decision_reason,
        "frozen": row.frozen,
    }


def _audit(row: sa.Row[Any]) -> dict[str, Any]:
    return {
        "at": iso(row.at),
        "cause_type": row.cause_type,
        "cause_message_id": row.cause_message_id,
        "from_status": row.from_status,
        "to_status": row.to_status,
        "sent": [name for name in row.sent.split(",") if name],
        "note": row.note,
    }


async def show_order(engine: AsyncEngine, query: Mapping[str, str]) -> tuple[int, Any]:
    """``GET /order?order_id=...``: the order, its refunds, its dispute and its audit trail."""
    order_id = query.get("order_id", "")
    if not order_id:
        return 400, {"error": "order_id: required"}
    async with reading(engine) as conn:
        order = (await conn.execute(sa.select(orders).where(orders.c.order_id == order_id))).first()
        if order is None:
            return 404, {"error": f"order {order_id[:100]!r} does not exist"}
        refund_rows = (
            await conn.execute(sa.select(refunds).where(refunds.c.order_id == order_id).order_by(refunds.c.created_at))
        ).all()
        dispute = (await conn.execute(sa.select(disputes).where(disputes.c.order_id == order_id))).first()
        trail = (await conn.execute(sa.select(audit).where(audit.c.order_id == order_id).order_by(audit.c.id))).all()
    return 200, {
        **_entry(order),
        "refunds": [_refund(row) for row in refund_rows],
        "dispute": None if dispute is None else _dispute(dispute),
        "audit": [_audit(row) for row in trail],
    }


STUCK_REASONS = ("waiting_on_operator", "compensating", "retrying", "no_progress")
STUCK_SCAN_LIMIT = 10_000
"""The open orders looked at per request, least recently moved first (the stuck ones are among them)."""
_OPEN = [status.value for status in OrderStatus if status not in FINAL]


def stuck_reason(row: sa.Row[Any], quiet_since: datetime) -> str | None:
    """Why an order needs looking at, the most pressing reason first; None when it does not."""
    if row.attention:
        return "waiting_on_operator"
    if row.status == OrderStatus.COMPENSATING.value or (row.refunding and row.refund_attempt > 1):
        return "compensating"
    if row.status == OrderStatus.PAYMENT_RETRYING.value:
        return "retrying"
    if row.status in _OPEN and _aware(row.updated_at) <= quiet_since and row.next_due_at is None:
        return "no_progress"  # nothing moved it for that long and no timer of its own will
    return None


async def stuck_orders(engine: AsyncEngine, clock: Clock, query: Mapping[str, str]) -> tuple[int, Any]:
    """``GET /orders/stuck?minutes=30&reason=...``: orders to look at, oldest first, with counts by reason."""
    try:
        minutes = positive(query, "minutes", 30, 60 * 24 * 365)
        wanted = query.get("reason") or None
        if wanted is not None and wanted not in STUCK_REASONS:
            raise ValueError(f"reason: one of {', '.join(STUCK_REASONS)}, not {wanted[:30]!r}")
        page = Page.of(query, per_page=50)
    except ValueError as error:
        return 400, {"error": str(error)}
    quiet_since = clock.now() - timedelta(minutes=minutes)
    candidates = sa.or_(
        orders.c.attention.is_not(None),
        orders.c.refunding.is_not(None),
        orders.c.status.in_(_OPEN),
    )
    async with reading(engine) as conn:
        rows = (
            await conn.execute(
                sa.select(orders).where(candidates).order_by(orders.c.updated_at).limit(STUCK_SCAN_LIMIT)
            )
        ).all()
    found = [(reason, row) for row in rows if (reason := stuck_reason(row, quiet_since)) is not None]
    counts = Counter(reason for reason, _ in found)
    chosen = [(reason, row) for reason, row in found if wanted in (None, reason)]
    shown = chosen[page.offset : page.offset + page.per_page]
    return 200, {
        "minutes": minutes,
        "counts": {reason: counts.get(reason, 0) for reason in STUCK_REASONS},
        "total": len(chosen),
        "scanned": len(rows),
        "page": page.page,
        "per_page": page.per_page,
        "orders": [{**_entry(row), "stuck": reason} for reason, row in shown],
    }


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
