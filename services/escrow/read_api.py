"""The escrow service's read API (GET, JSON), from its own database: the ledger, the holds and the
sellers' settlements. The books audit (G1, scripts/audit) reads the first three.

- ``GET /ledger/records?after=<id>&limit=<n>``: the log, oldest first, ``limit`` (1-1000, default
  100) records whose database ``id`` is above ``after`` (default: from the start). Each record
  carries its :class:`TransferRecord` fields, with ``seq`` its position in the whole log (0, 1,
  2, ...: what :meth:`Ledger.replay` expects; ids may skip values, positions never do), and its
  ``id``. ``next`` is the ``after`` of the following page, null at the end.
- ``GET /ledger/balances``: every account's code, kind, owner, currency and four totals.
- ``GET /holds?status=held|released|returned&page=&per_page=``: the holds, oldest first, with
  what each still holds (once released, what the seller was paid), ``frozen`` (E3: the dispute
  that freezes it and ``since`` when, null when no freeze is in force) and ``dispute_id`` (the
  dispute that froze it, kept once the hold has ended).
- ``GET /order?order_id=``: where one order's money is: its hold (as ``/holds`` shows each, null
  when escrow has none), the ledger accounts the order owns with their four totals and the net
  balance, and every transfer booked for it, oldest first (the operator console's order page).
- ``GET /settlements?seller_id=&day=YYYY-MM-DD`` (E4): the releases posted to a seller's payable
  on that day (UTC), the total per currency and their count.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from functools import partial
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from services.escrow.domain import AccountState, EscrowHold, HoldStatus
from services.escrow.domain.ledger import TransferRecord
from services.escrow.domain.settlements import settlement
from services.escrow.store import (
    account_states,
    holds_page,
    ledger_transfers,
    order_books,
    records_after,
    releases,
)
from shared.db import reading
from shared.observability import ReadRoute
from shared.read_api import Page, iso, whole

MAX_RECORDS = 1000
STATUSES = tuple(status.value for status in HoldStatus)
Answer = tuple[int, Any]


def _record(record: TransferRecord, position: int) -> dict[str, Any]:
    row = record.to_row()
    row["id"] = record.seq  # record_of gives the database id as seq
    row["seq"] = position
    row["applied_at"] = iso(record.applied_at)
    row["expires_at"] = iso(record.expires_at)
    return row


async def records(engine: AsyncEngine, query: Mapping[str, str]) -> Answer:
    try:
        after = whole(query, "after", 0, least=0, most=2**63 - 1)
        limit = whole(query, "limit", 100, least=1, most=MAX_RECORDS)
    except ValueError as error:
        return 400, {"error": str(error)}
    async with reading(engine) as conn:
        found = await records_after(conn, after, limit + 1)
        before = (
            await conn.execute(
                sa.select(sa.func.count()).select_from(ledger_transfers).where(ledger_transfers.c.id <= after)
            )
        ).scalar_one()
    page = found[:limit]
    following = page[-1].seq if len(found) > limit else None
    return 200, {
        "records": [_record(record, int(before) + index) for index, record in enumerate(page)],
        "next": following,
    }


def _account(state: AccountState) -> dict[str, Any]:
    return {
        "code": state.code,
        "kind": state.kind,
        "owner": state.owner,
        "currency": state.currency,
        "debits_pending": state.debits_pending,
        "debits_posted": state.debits_posted,
        "credits_pending": state.credits_pending,
        "credits_posted": state.credits_posted,
    }


async def balances(engine: AsyncEngine, _query: Mapping[str, str]) -> Answer:
    async with reading(engine) as conn:
        states = await account_states(conn)
    return 200, {"accounts": [_account(state) for state in states]}


async def order(engine: AsyncEngine, query: Mapping[str, str]) -> Answer:
    order_id = query.get("order_id", "")
    if not order_id:
        return 400, {"error": "order_id: required"}
    async with reading(engine) as conn:
        books = await order_books(conn, order_id)
    if books.hold is None and not books.transfers:
        return 404, {"error": f"escrow has nothing for order {order_id[:100]!r}"}
    return 200, {
        "order_id": order_id,
        "hold": _hold(books.hold) if books.hold is not None else None,
        "accounts": [
            _account(state) | {"balance_minor": state.credits_posted - state.debits_posted} for state in books.accounts
        ],
        "transfers": [_record(record, index) for index, record in enumerate(books.transfers)],
    }


def _hold(hold: EscrowHold) -> dict[str, Any]:
    return {
        "order_id": hold.order_id,
        "buyer_id": hold.buyer_id,
        "seller_id": hold.seller_id,
        "amount": hold.amount.model_dump(),
        "still_held": hold.still_held.model_dump(),
        "status": hold.status.value,
        "frozen": {"dispute_id": hold.frozen_by, "since": iso(hold.frozen_at)} if hold.frozen else None,
        "dispute_id": hold.frozen_by,
    }


async def holds(engine: AsyncEngine, query: Mapping[str, str]) -> Answer:
    try:
        status = query.get("status") or None
        if status is not None and status not in STATUSES:
            raise ValueError(f"status: one of {', '.join(STATUSES)}, not {status[:30]!r}")
        paging = Page.of(query)
    except ValueError as error:
        return 400, {"error": str(error)}
    async with reading(engine) as conn:
        found, total = await holds_page(conn, status, paging.page, paging.per_page)
    return 200, {
        "status": status,
        "page": paging.page,
        "per_page": paging.per_page,
        "total": total,
        "holds": [_hold(hold) for hold in found],
    }


async def settlements(engine: AsyncEngine, query: Mapping[str, str]) -> Answer:
    seller_id = query.get("seller_id", "")
    day_text = query.get("day", "")
    try:
        if not seller_id:
            raise ValueError("seller_id: required")
        try:
            day = date.fromisoformat(day_text)
        except ValueError:
            raise ValueError(f"day: a date as YYYY-MM-DD, not {day_text[:20]!r}") from None
    except ValueError as error:
        return 400, {"error": str(error)}
    async with reading(engine) as conn:
        found = settlement(seller_id, day, await releases(conn, seller_id, day))
    return 200, {
        "seller_id": found.seller_id,
        "day": found.day.isoformat(),
        "count": found.count,
        "totals": [total.model_dump() for total in found.totals],
        "releases": [
            {
                "order_id": release.order_id,
                "amount": release.amount.model_dump(),
                "released_at": iso(release.released_at),
            }
            for release in found.releases
        ],
    }


def routes(engine: AsyncEngine) -> dict[str, ReadRoute]:
    """The GET routes, bound to the service's engine."""
    return {
        "/ledger/records": partial(records, engine),
        "/ledger/balances": partial(balances, engine),
        "/holds": partial(holds, engine),
        "/order": partial(order, engine),
        "/settlements": partial(settlements, engine),
    }
