"""The payment service's answers: captured (hold it), failed (retry, wait, or cancel)."""

from __future__ import annotations

from typing import Any

from contracts import PaymentCaptured, PaymentFailed
from services.saga.domain import COMPENSATION
from services.saga.handlers import apply, handlers, log
from services.saga.ports import policy
from services.saga.store import ORDERS, REFUNDS
from shared.aggregates import Load
from shared.consumer import HandlerContext

# A payment captured after the order was cancelled starts the order's compensation refund.
BY_ORDER_AND_COMPENSATION: list[Load[Any]] = [
    ORDERS.by("order_id"),
    REFUNDS.by(lambda message, _: (message.order_id, COMPENSATION)),
]


@handlers.on(PaymentCaptured, loads=BY_ORDER_AND_COMPENSATION)
def payment_captured(event: PaymentCaptured, ctx: HandlerContext) -> None:
    order = ctx.get(ORDERS, event.order_id)
    if order is None or not order.answers(amount=event.amount, buyer_id=event.buyer_id):
        log.warning("capture that answers no order of ours ignored", order_id=event.order_id)
        return
    apply(order, order.payment_captured(event.attempt, event.breakdown), ctx)


@handlers.on(PaymentFailed, loads=[ORDERS.by("order_id")])
def payment_failed(event: PaymentFailed, ctx: HandlerContext) -> None:
    order = ctx.get(ORDERS, event.order_id)
    if order is None or not order.answers(amount=event.amount, buyer_id=event.buyer_id):
        log.warning("payment failure that answers no order of ours ignored", order_id=event.order_id)
        return
    step = order.payment_failed(
        event.attempt, event.reason, event.detail, permanent=event.permanent, now=ctx.now, policy=policy(ctx)
    )
    apply(order, step, ctx)
