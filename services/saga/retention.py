"""Which order transitions leave the saga database (issue 19, shared.retention).

An order's audit trail (``order_audit``: every message that did something to it, S6) moves to
the archive once the order is final (completed, cancelled or refunded, with no refund under
way) and has not moved for the archive window (``RETENTION_ARCHIVE_AFTER_DAYS``, 30 days), each
row older than that window: an order still open, in a dispute for example, keeps its whole
trail in the database, where ``GET /order`` and the timeline read it. The orders, their
refunds and disputes are money records and are never archived.
"""

from __future__ import annotations

from datetime import datetime

from services.saga.domain import FINAL
from services.saga.store import audit, orders
from shared.retention import Archive, Candidate, Related


def order_settled(candidate: Candidate, cutoff: datetime) -> bool:
    """The order is final and quiet since before ``cutoff`` (or was never stored: a refused
    checkout's trail)."""
    found = candidate.related[orders.name]
    if not found:
        return True
    order = found[0]
    quiet: bool = order["updated_at"] < cutoff
    return order["status"] in FINAL and order["refunding"] is None and quiet


TRANSITIONS_ARCHIVE = Archive(
    audit,
    age="at",
    key="order_id",
    related=(Related(orders, "order_id", moved=False),),
    movable=order_settled,
)
