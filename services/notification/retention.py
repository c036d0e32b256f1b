"""Which notices leave the notification database, and with what (issue 19, shared.retention).

A notice older than the archive window (``RETENTION_ARCHIVE_AFTER_DAYS``, 30 days) moves to the
archive with the rows that exist only for it: its email's delivery, the worker's send log and
its release (the held notice rendered again). It stays while its email may still be sent:
``pending`` (the worker is at it) or ``dead`` (an operator may re-drive it, and ``tradeguard
notifications undelivered`` lists it). A ``held`` one goes too: its recipient's profile has not
come in all of the archive window, and a notice that old would be news to no one (the archive
keeps it; a recipient who registers later finds it released in the inbox no more). What
every other table holds (recipients, their preferences, the orders' read copies) is kept: it is
one row per account or order, and new notices are decided with it.
"""

from __future__ import annotations

from datetime import datetime

from services.notification.domain.delivery import DeliveryState
from services.notification.store import email_deliveries, email_send_log, notification_releases, notifications
from shared.retention import Archive, Candidate, Related

FINISHED = frozenset({DeliveryState.SENT.value, DeliveryState.SUPPRESSED.value})
"""Delivery states nothing can change any more (a dead one can be re-driven)."""


def email_finished(candidate: Candidate, _cutoff: datetime) -> bool:
    """No email, or one that is sent, suppressed, or held for a recipient who never came (a held
    one released to an address is about to be sent: it stays)."""
    released = any(r["address"] is not None for r in candidate.related[notification_releases.name])
    return all(
        d["state"] in FINISHED or (d["state"] == DeliveryState.HELD.value and not released)
        for d in candidate.related[email_deliveries.name]
    )


NOTICES_ARCHIVE = Archive(
    notifications,
    age="created_at",
    key="notification_id",
    related=(
        Related(email_deliveries, "notification_id"),
        Related(email_send_log, "notification_id"),
        Related(notification_releases, "notification_id"),
    ),
    movable=email_finished,
)
