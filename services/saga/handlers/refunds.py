"""Refunds (P6) and compensations (S3): escrow gives the part back, the payment pays it out."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from contracts import FundsReturned, PaymentRefunded, RefundFailed, RequestRefund
from services.saga.domain import Order, Refund, Step, refund_of
from services.saga.handlers import apply, handlers, log
from services.saga.handlers.orders import order_or_refuse
from services.saga.ports import policy
from services.saga.store import ORDERS, REFUNDS
from shared.aggregates import Load
from shared.consumer import HandlerContext

# The payment service knows the saga's own refunds as <refund id>:<order id>: the saga's record is the refund id.
BY_REFUND: list[Load[Any]] = [
    ORDERS.by("order_id"),
    REFUNDS.by(lambda message, _: (message.order_id, refund_of(message.refund_id))),
]
RefundEvent = FundsReturned | PaymentRefunded | RefundFailed


@handlers.on(RequestRefund, loads=BY_REFUND)
def request_refund(command: RequestRefund, ctx: HandlerContext) -> None:
    order = order_or_refuse(ctx, command.order_id)
    known = ctx.get(REFUNDS, (command.order_id, command.refund_id))
    if known is not None:
        known.check_same_request(command.amount)
        log.info("repeated refund request changes nothing", order_id=order.order_id, refund_id=known.refund_id)
        return
    apply(order, order.request_refund(command.refund_id, command.amount, command.reason), ctx)


@handlers.on(FundsReturned, loads=BY_REFUND)
def funds_returned(event: FundsReturned, ctx: HandlerContext) -> None:
    _advance_refund(event, ctx, Order.funds_returned)


@handlers.on(PaymentRefunded, loads=BY_REFUND)
def payment_refunded(event: PaymentRefunded, ctx: HandlerContext) -> None:
    _advance_refund(event, ctx, Order.payment_refunded)


@handlers.on(RefundFailed, loads=BY_REFUND)
def refund_failed(event: RefundFailed, ctx: HandlerContext) -> None:
    def fail(order: Order, refund: Refund) -> Step:
        step = order.refund_failed(refund, event.reason, event.detail, ctx.now, policy(ctx), answered=event.attempt)
        if step.announce is not None:  # retries spent: money out of escrow, not back with the buyer
            log.error(
                "refund failed for good: an operator must act",
                order_id=order.order_id,
                refund_id=refund.refund_id,
                amount=str(refund.amount),
                reason=event.reason,
            )
        return step

    _advance_refund(event, ctx, fail)


def _advance_refund(event: RefundEvent, ctx: HandlerContext, decide: Callable[[Order, Refund], Step]) -> None:
    """A refund's event moves the refund on, once it is known to answer that refund of that order."""
    order = ctx.get(ORDERS, event.order_id)
    refund = ctx.get(REFUNDS, (event.order_id, refund_of(event.refund_id)))
    if order is None or refund is None:
        log.info("event for a refund the saga does not know", order_id=event.order_id, refund_id=event.refund_id)
        return
    returned = isinstance(event, FundsReturned)
    if not order.answers_refund(refund, amount=event.amount, buyer_id=event.buyer_id) or (
        returned and not order.caused_by_us(f"ReturnFunds:{refund.refund_id}", ctx.envelope.causation_id)
    ):
        log.warning(
            "event does not match the refund's amount or the order's buyer; ignored",
            order_id=event.order_id,
            refund_id=event.refund_id,
        )
        return
    apply(order, decide(order, refund), ctx)
