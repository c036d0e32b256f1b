"""N2: the in-app inbox and the operator's view of undelivered email, on the service's HTTP port.

``GET /notifications?account_id=buyer-1&unread=true&page=1&per_page=20``: a holder's inbox,
newest first, each notice with its subject, text, whether it was read and what became of its
email. A notice made before the account's profile arrived reads in English until then, and as
released in the profile's language after (handlers/events.py). Marking read is a command
(``MarkNotificationsRead``): the read API only reads.

``GET /notifications/undelivered?state=dead``: emails not delivered (``pending`` or ``dead``,
the default both), oldest first, with the attempts and the last error; the address is masked.
``tradeguard notifications undelivered`` prints it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from services.notification.domain.delivery import DeliveryState
from services.notification.store import email_deliveries, notification_releases, notifications
from shared.db import reading
from shared.read_api import MAX_PER_PAGE, iso, positive

_UNDELIVERED = (DeliveryState.PENDING.value, DeliveryState.DEAD.value)


def mask_address(address: str) -> str:
    """``a***@example.com``: enough for an operator to recognise it, not to harvest it."""
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}"


async def inbox(engine: AsyncEngine, query: Mapping[str, str]) -> tuple[int, Any]:
    account_id = query.get("account_id", "")
    try:
        if not account_id:
            raise ValueError("account_id: required")
        page = positive(query, "page", 1, 10**6)
        per_page = positive(query, "per_page", 20, MAX_PER_PAGE)
    except ValueError as error:
        return 400, {"error": str(error)}
    n, d, r = notifications, email_deliveries, notification_releases
    mine = n.c.recipient_id == account_id
    if query.get("unread", "").lower() in ("1", "true", "yes"):
        mine = sa.and_(mine, n.c.read_at.is_(None))
    async with reading(engine) as conn:
        total = (await conn.execute(sa.select(sa.func.count()).select_from(n).where(mine))).scalar_one()
        unread = (
            await conn.execute(
                sa.select(sa.func.count()).select_from(n).where(n.c.recipient_id == account_id, n.c.read_at.is_(None))
            )
        ).scalar_one()
        rows = (
            await conn.execute(
                sa.select(
                    n.c.notification_id,
                    n.c.kind,
                    n.c.category,
                    n.c.order_id,
                    n.c.read_at,
                    n.c.created_at,
                    # a held notice reads as released, in the profile's language, once it is
                    sa.func.coalesce(r.c.language, n.c.language).label("language"),
                    sa.func.coalesce(r.c.subject, n.c.subject).label("subject"),
                    sa.func.coalesce(r.c.body, n.c.body).label("body"),
                    d.c.state.label("email_state"),
                    r.c.notification_id.label("released"),
                    r.c.address.label("released_to"),
                )
                .outerjoin(d, d.c.notification_id == n.c.notification_id)
                .outerjoin(r, r.c.notification_id == n.c.notification_id)
                .where(mine)
                .order_by(n.c.created_at.desc(), n.c.id.desc())
                .limit(per_page)
                .offset((page - 1) * per_page)
            )
        ).all()
    return 200, {
        "account_id": account_id,
        "page": page,
        "per_page": per_page,
        "total": int(total),
        "unread": int(unread),
        "notifications": [_notice(row) for row in rows],
    }


def _notice(row: Any) -> dict[str, Any]:
    return {
        "notification_id": row.notification_id,
        "kind": row.kind,
        "category": row.category,
        "order_id": row.order_id,
        "language": row.language,
        "subject": row.subject,
        "body": row.body,
        "read": row.read_at is not None,
        "email": _email_state(row),
        "created_at": iso(row.created_at),
    }


_NOT_SENT = "not sent (no address, or email turned off)"


def _email_state(row: Any) -> str:
    if row.email_state != DeliveryState.HELD.value:
        return str(row.email_state or _NOT_SENT)
    if row.released is None:
        return "held until the account's details arrive"
    return DeliveryState.PENDING.value if row.released_to is not None else _NOT_SENT


async def undelivered(engine: AsyncEngine, query: Mapping[str, str]) -> tuple[int, Any]:
    state = query.get("state", "")
    if state and state not in _UNDELIVERED:
        return 400, {"error": f"state: one of {', '.join(_UNDELIVERED)}, not {state[:20]!r}"}
    try:
        limit = positive(query, "limit", 100, 1000)
    except ValueError as error:
        return 400, {"error": str(error)}
    d, r = email_deliveries, notification_releases
    states = (state,) if state else _UNDELIVERED
    address = sa.func.coalesce(d.c.address, r.c.address, "").label("to")  # a released held one: the release's
    async with reading(engine) as conn:
        rows = (
            await conn.execute(
                sa.select(d, address)
                .outerjoin(r, r.c.notification_id == d.c.notification_id)
                .where(d.c.state.in_(states))
                .order_by(d.c.created_at, d.c.notification_id)
                .limit(limit)
            )
        ).all()
    return 200, {
        "undelivered": [
            {
                "notification_id": row.notification_id,
                "account_id": row.recipient_id,
                "address": mask_address(row.to),
                "kind": row.kind,
                "order_id": row.order_id,
                "state": row.state,
                "attempts": row.attempts,
                "next_attempt_at": iso(row.not_before),
                "last_error": row.last_error,
                "created_at": iso(row.created_at),
            }
            for row in rows
        ]
    }
