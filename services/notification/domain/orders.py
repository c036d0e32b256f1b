"""What the notification service remembers of an order: its last status (to suppress reminders
that went stale), whether its payment's success was read (so a late failure is not told after
it) and the card it was paid with (brand and last four only, for the message)."""

from __future__ import annotations

from dataclasses import dataclass

from contracts import OrderStatus
from services.notification.domain.rules import FINAL_ORDER_STATUSES


@dataclass(slots=True)
class OrderCopy:
    order_id: str
    status: OrderStatus | None = None
    card_brand: str | None = None
    card_last4: str | None = None
    captured: bool = False
    """PaymentCaptured was read: the buyer is told the payment succeeded, never after that that it failed."""

    @property
    def is_final(self) -> bool:
        """Completed, cancelled or refunded: a reminder about it would be stale."""
        return self.status in FINAL_ORDER_STATUSES
