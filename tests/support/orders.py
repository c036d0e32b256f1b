"""Small helpers the end-to-end and fault tests share about orders: amounts and status waits."""

from __future__ import annotations

from collections.abc import Callable

from contracts import Money, OrderStatus, OrderStatusChanged
from scripts.marketplace import Seen


def usd(minor: int) -> Money:
    return Money(amount_minor=minor, currency="USD")


def reached(order_id: str, status: OrderStatus) -> Callable[[Seen], bool]:
    """Matches the order's OrderStatusChanged to ``status`` (for ``EventWatcher.wait_for``)."""

    def matches(seen: Seen) -> bool:
        m = seen.message
        return isinstance(m, OrderStatusChanged) and m.order_id == order_id and m.status is status

    return matches
