"""S4: the deadline sweeper's nudge fires every timer of the order that is due, once."""

from __future__ import annotations

from typing import Any

from contracts import OrderDeadlineReached
from services.saga.domain.refunds import DISPUTE_REFUND
from services.saga.handlers import apply, handlers
from services.saga.ports import policy
from services.saga.store import DISPUTES, ORDERS, REFUNDS
from shared.aggregates import Load
from shared.consumer import HandlerContext

# A seller's silence resolves the dispute, which starts the dispute's refund.
BY_ORDER_AND_DISPUTE: list[Load[Any]] = [
    ORDERS.by("order_id"),
    DISPUTES.by("order_id"),
    REFUNDS.by(lambda message, _: (message.order_id, DISPUTE_REFUND)),
]


@handlers.on(OrderDeadlineReached, loads=BY_ORDER_AND_DISPUTE)
def deadline_reached(command: OrderDeadlineReached, ctx: HandlerContext) -> None:
    order = ctx.get(ORDERS, command.order_id)
    if order is None:
        return
    due = order.due(ctx.now)
    if not due:  # fired already (a second nudge), or moved later since the sweep
        return
    dispute = ctx.get(DISPUTES, command.order_id)
    for deadline in due:
        apply(order, order.fire(deadline, ctx.now, policy(ctx), dispute), ctx)
