"""P7: the payment history of an account, paged, from the payment service's own database.

``GET /payments?account_id=buyer-1&page=1&per_page=20`` on the service's HTTP port: newest
first, each payment with its status, source kind, the network's charge id, the failure's
reason, its price breakdown (P3: rate, fee, discount, total in the buyer's currency,
settlement in the seller's), the legs it was paid from, and what has been refunded (P6). Readers (the CLI, the operator console) use this, never the database itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts import FundingType, Money
from services.payment.domain.pricing import Breakdown
from services.payment.store import payments

MAX_PER_PAGE = 100


def _positive(query: Mapping[str, str], name: str, default: int, most: int) -> int:
    text = query.get(name, str(default))
    if not text.isdigit() or not 1 <= int(text) <= most:
        raise ValueError(f"{name}: a whole number from 1 to {most}, not {text[:20]!r}")
    return int(text)


def _when(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else None


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
        "funding_type": row.funding_type,
        "breakdown": _breakdown(row),
        "quote_id": row.quote_id,
        "legs": {"wallet": _money(row, "wallet_leg"), "source": _money(row, "source_leg")},
        "refunded": _money(row, "refunded"),
        "refunded_to_buyer": _money(row, "refunded_to_buyer"),
        "charge_id": row.charge_id,
        "failure_reason": row.failure_reason,
        "failure_detail": row.failure_detail,
        "created_at": _when(row.created_at),
        "updated_at": _when(row.updated_at),
    }


async def history(engine: AsyncEngine, query: Mapping[str, str]) -> tuple[int, Any]:
    account_id = query.get("account_id", "")
    try:
        if not account_id:
            raise ValueError("account_id: required")
        page = _positive(query, "page", 1, 10**6)
        per_page = _positive(query, "per_page", 20, MAX_PER_PAGE)
    except ValueError as error:
        return 400, {"error": str(error)}
    mine = payments.c.buyer_id == account_id
    async with engine.connect() as conn:
        total = (await conn.execute(sa.select(sa.func.count()).select_from(payments).where(mine))).scalar_one()
        rows = (
            await conn.execute(
                sa.select(payments)
                .where(mine)
                .order_by(payments.c.created_at.desc(), payments.c.order_id)
                .limit(per_page)
                .offset((page - 1) * per_page)
            )
        ).all()
    return 200, {
        "account_id": account_id,
        "page": page,
        "per_page": per_page,
        "total": int(total),
        "payments": [_entry(row) for row in rows],
    }
