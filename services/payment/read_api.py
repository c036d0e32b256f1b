"""P7: the payment history of an account, paged, from the payment service's own database.

``GET /payments?account_id=buyer-1&page=1&per_page=20`` on the service's HTTP port: newest
first, each payment with its status, its attempt (S2: one entry per order, for its latest
attempt, so a paid order shows the attempt that was captured), source kind, the network's
charge id, the failure's reason, its price breakdown (P3: rate, fee, discount, total in the
buyer's currency, settlement in the seller's), the legs it was paid from, and what has been
refunded (P6). Readers (the CLI, the operator console) use this, never the database itself.

``GET /payments?status=captured&page=1&per_page=100`` (a ``status`` and no ``account_id``): every
account's payments in that status, oldest first (new ones land on the last page, so a reader
paging through them misses none and sees none twice), in the same form: what the books audit
(G1, scripts/audit) checks against escrow. ``status`` also narrows one account's history.

``GET /payment?order_id=order-7f3a``: the one order's payment in the same form (404 when the
service has none): what the operator console shows beside the saga's view of the order.

``GET /limits?account_id=buyer-1``: the payment service's copy of the buyer's limits (P2): the
verification level it has seen, the per-payment, daily and monthly limits, and what the current
windows have spent. The copy follows the account service's events, so it may lag a moment
behind them; a reader that needs a level to be in force (onboarding before a checkout) waits
for it here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts import FundingType, Money
from services.payment.domain.payments import PaymentStatus
from services.payment.domain.pricing import Breakdown
from services.payment.store import account_limits, payments, spending_windows
from shared.db import reading
from shared.read_api import Page, iso

STATUSES = tuple(status.value for status in PaymentStatus)


def _money(row: sa.Row[Any], name: str) -> dict[str, Any] | None:
    minor = getattr(row, f"{name}_minor")
    return None if minor is None else {"amount_minor": minor, "currency": getattr(row, f"{name}_currency")}


def _breakdown(row: sa.Row[Any]) -> dict[str, Any] | None:
    """The breakdown of the funding type the account paid from (none until it has)."""
    if row.funding_type is None:
        return None
    if row.pricing is None:  # domestic: the price is the amount, no rate, no fee
        amount = Money(amount_minor=row.amount_minor, currency=row.currency)
        return Breakdown.domestic(amount, FundingType(row.funding_type)).to_dict()
    breakdowns: dict[str, Any] = row.pricing["breakdowns"]
    return breakdowns.get(row.funding_type)


def _entry(row: sa.Row[Any]) -> dict[str, Any]:
    return {
        "order_id": row.order_id,
        "amount": {"amount_minor": row.amount_minor, "currency": row.currency},
        "status": row.status,
        "attempt": row.attempt,
        "funding_type": row.funding_type,
        "breakdown": _breakdown(row),
        "quote_id": row.quote_id,
        "legs": {"wallet": _money(row, "wallet_leg"), "source": _money(row, "source_leg")},
        "refunded": _money(row, "refunded"),
        "refunded_to_buyer": _money(row, "refunded_to_buyer"),
        "charge_id": row.charge_id,
        "failure_reason": row.failure_reason,
        "failure_detail": row.failure_detail,
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
    }


def _status(query: Mapping[str, str]) -> str | None:
    status = query.get("status") or None
    if status is not None and status not in STATUSES:
        raise ValueError(f"status: one of {', '.join(STATUSES)}, not {status[:30]!r}")
    return status


async def history(engine: AsyncEngine, query: Mapping[str, str]) -> tuple[int, Any]:
    """An account's payments newest first; with ``status`` and no account, every account's, oldest first."""
    account_id = query.get("account_id", "")
    try:
        status = _status(query)
        if not account_id and status is None:
            raise ValueError("account_id: required")
        paging = Page.of(query)
    except ValueError as error:
        return 400, {"error": str(error)}
    chosen = [payments.c.buyer_id == account_id] if account_id else []
    if status is not None:
        chosen.append(payments.c.status == status)
    order = (
        (payments.c.created_at.desc(), payments.c.order_id)
        if account_id
        else (payments.c.created_at, payments.c.order_id)
    )
    async with reading(engine) as conn:
        total = (await conn.execute(sa.select(sa.func.count()).select_from(payments).where(*chosen))).scalar_one()
        rows = (
            await conn.execute(
                sa.select(payments).where(*chosen).order_by(*order).limit(paging.per_page).offset(paging.offset)
            )
        ).all()
    return 200, {
        "account_id": account_id or None,
        "status": status,
        "page": paging.page,
        "per_page": paging.per_page,
        "total": int(total),
        "payments": [_entry(row) for row in rows],
    }


async def order_payment(engine: AsyncEngine, query: Mapping[str, str]) -> tuple[int, Any]:
    """The payment of one order (its latest attempt), as :func:`history` shows each."""
    order_id = query.get("order_id", "")
    if not order_id:
        return 400, {"error": "order_id: required"}
    async with reading(engine) as conn:
        row = (await conn.execute(sa.select(payments).where(payments.c.order_id == order_id))).first()
    if row is None:
        return 404, {"error": f"no payment for order {order_id[:100]!r}"}
    return 200, _entry(row)


async def limits(engine: AsyncEngine, query: Mapping[str, str]) -> tuple[int, Any]:
    """One buyer's limits as this service holds them, with the spending of each stored window."""
    account_id = query.get("account_id", "")
    if not account_id:
        return 400, {"error": "account_id: required"}
    async with reading(engine) as conn:
        row = (await conn.execute(sa.select(account_limits).where(account_limits.c.account_id == account_id))).first()
        if row is None:
            return 404, {"error": f"no limits known for account {account_id[:100]!r}"}
        windows = (
            await conn.execute(
                sa.select(spending_windows)
                .where(spending_windows.c.account_id == account_id)
                .order_by(spending_windows.c.kind, spending_windows.c.start)
            )
        ).all()
    return 200, {
        "account_id": account_id,
        "level": row.level,
        "country": row.country,
        "registered_at": iso(row.registered_at),
        "per_payment": _money(row, "per_payment"),
        "daily": _money(row, "daily"),
        "monthly": _money(row, "monthly"),
        "spent": [{"window": w.kind, "start": w.start, "spent": _money(w, "spent")} for w in windows],
    }
