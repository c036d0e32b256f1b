"""A notification as stored: the rendered message in the recipient's inbox (N1, N2)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from services.notification.domain.rules import Category, NoticeKind


@dataclass(slots=True)
class Notification:
    """One notice for one person; ``notification_id`` is derived from (recipient, kind, reference)."""

    notification_id: str
    recipient_id: str
    kind: NoticeKind
    category: Category
    reference: str
    order_id: str | None
    language: str
    subject: str
    body: str
    html: str
    correlation_id: str
    read_at: datetime | None = None

    def mark_read(self, now: datetime) -> bool:
        if self.read_at is not None:
            return False
        self.read_at = now
        return True
