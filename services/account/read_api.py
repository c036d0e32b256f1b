"""The account service's read API (GET, JSON), from its own database: what an operator reviews
(A2 identities waiting for a decision, A6 locked and restricted accounts) and one account's
status with its audit trail. The operator console reads these, never the database.

- ``GET /identities?status=submitted|approved|rejected&page=&per_page=``: identity submissions,
  oldest first (default ``submitted``: those waiting for an operator), each with its level, the
  legal name, the document's type and masked number, the country and when it was submitted.
- ``GET /accounts?status=locked|restricted|...&page=&per_page=``: accounts in that status (default
  ``locked``), the longest in it first, with the failed checks that led there.
- ``GET /account?account_id=``: one account's status, level and country, with its audit trail
  (every status move, who made it and why), newest first.

Never answered: the phone code, password, PIN or TOTP digests, nor a document's number (only
its masked form is stored).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts import AccountStatus
from services.account.domain.verification import ReviewStatus
from services.account.store import account_audit, accounts, identity_reviews
from shared.db import reading
from shared.observability import ReadRoute
from shared.read_api import Page, iso

Answer = tuple[int, Any]
AUDIT_ROWS = 100


def _choice(query: Mapping[str, str], default: str, allowed: tuple[str, ...]) -> str:
    chosen = query.get("status") or default
    if chosen not in allowed:
        raise ValueError(f"status: one of {', '.join(allowed)}, not {chosen[:30]!r}")
    return chosen


def _identity(row: sa.Row[Any]) -> dict[str, Any]:
    return {
        "account_id": row.account_id,
        "level": row.level,
        "status": row.status,
        "legal_name": row.legal_name,
        "document_type": row.document_type,
        "document_masked": row.document_masked,
        "birth_date": row.birth_date.isoformat(),
        "country": row.country,
        "address": row.address,
        "submitted_at": iso(row.submitted_at),
        "submissions": row.submissions,
        "reasons": [reason for reason in row.reasons.split(",") if reason],
        "reviewed_by": row.reviewed_by,
    }


def _account(row: sa.Row[Any]) -> dict[str, Any]:
    return {
        "account_id": row.account_id,
        "status": row.status,
        "level": row.level,
        "country": row.country,
        "currency": row.currency,
        "failed_checks": row.failed_checks,
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
    }


async def _page(
    engine: AsyncEngine, table: sa.Table, status: str, paging: Page, order: tuple[sa.ColumnElement[Any], ...]
) -> tuple[int, list[sa.Row[Any]]]:
    """Rows of ``table`` in ``status``, a page of them in ``order``, and how many there are in all."""
    chosen = table.c.status == status
    async with reading(engine) as conn:
        total = (await conn.execute(sa.select(sa.func.count()).select_from(table).where(chosen))).scalar_one()
        query = sa.select(table).where(chosen).order_by(*order).limit(paging.per_page).offset(paging.offset)
        rows = list((await conn.execute(query)).all())
    return int(total), rows


async def identities(engine: AsyncEngine, query: Mapping[str, str]) -> Answer:
    try:
        status = _choice(query, ReviewStatus.SUBMITTED.value, tuple(s.value for s in ReviewStatus))
        paging = Page.of(query)
    except ValueError as error:
        return 400, {"error": str(error)}
    order = (identity_reviews.c.submitted_at, identity_reviews.c.account_id)
    total, rows = await _page(engine, identity_reviews, status, paging, order)
    listed = {"status": status, "page": paging.page, "per_page": paging.per_page, "total": total}
    return 200, listed | {"identities": [_identity(row) for row in rows]}


async def accounts_in(engine: AsyncEngine, query: Mapping[str, str]) -> Answer:
    try:
        status = _choice(query, AccountStatus.LOCKED.value, tuple(s.value for s in AccountStatus))
        paging = Page.of(query)
    except ValueError as error:
        return 400, {"error": str(error)}
    total, rows = await _page(engine, accounts, status, paging, (accounts.c.updated_at, accounts.c.account_id))
    listed = {"status": status, "page": paging.page, "per_page": paging.per_page, "total": total}
    return 200, listed | {"accounts": [_account(row) for row in rows]}


async def account(engine: AsyncEngine, query: Mapping[str, str]) -> Answer:
    account_id = query.get("account_id", "")
    if not account_id:
        return 400, {"error": "account_id: required"}
    async with reading(engine) as conn:
        row = (await conn.execute(sa.select(accounts).where(accounts.c.account_id == account_id))).first()
        if row is None:
            return 404, {"error": f"no account {account_id[:100]!r}"}
        trail = (
            await conn.execute(
                sa.select(account_audit)
                .where(account_audit.c.account_id == account_id)
                .order_by(account_audit.c.id.desc())
                .limit(AUDIT_ROWS)
            )
        ).all()
    return 200, _account(row) | {
        "audit": [{"action": a.action, "actor": a.actor, "detail": a.detail, "at": iso(a.at)} for a in trail]
    }


def routes(engine: AsyncEngine) -> dict[str, ReadRoute]:
    """The GET routes, bound to the service's engine."""
    return {
        "/identities": partial(identities, engine),
        "/accounts": partial(accounts_in, engine),
        "/account": partial(account, engine),
    }
