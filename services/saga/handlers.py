"""Saga handlers: find the order, let the rules decide, record the step, send what it says."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from contracts import (
    Checkout,
    Command,
    ConfirmReceipt,
    FundsHeld,
    FundsReleased,
    FundsReturned,
    OrderStatusChanged,
    PaymentCaptured,
    PaymentFailed,
    PaymentRefunded,
    RefundFailed,
    RefundPayment,
    RequestRefund,
    ReturnFunds,
)
from services.saga.domain import Order, Refund, Step, unknown_order
from services.saga.store import ORDERS, REFUNDS, TRANSITIONS
from shared.aggregates import Load
from shared.consumer import HandlerContext, MessageHandlers
from shared.logging import get_logger

handlers = MessageHandlers()
log = get_logger(__name__)
BY_ORDER = [ORDERS.by("order_id")]
BY_REFUND: list[Load[Any]] = [
    ORDERS.by("order_id"),
    REFUNDS.by(lambda message, _: (message.order_id, message.refund_id)),
]
RefundEvent = FundsReturned | PaymentRefunded | RefundFailed


@handlers.on(Checkout, loads=BY_ORDER)
def checkout(command: Checkout, ctx: HandlerContext) -> None:
    existing = ctx.get(ORDERS, command.order_id)
    if existing is not None:
        existing.check_same_checkout(command)
        log.info("repeated checkout ignored", order_id=command.order_id, status=existing.status.value)
        return
    order, step = Order.place(command)
    _apply(ctx.add(ORDERS, order), step, ctx)


@handlers.on(ConfirmReceipt, loads=BY_ORDER)
def confirm_receipt(command: ConfirmReceipt, ctx: HandlerContext) -> None:
    _advance(command.order_id, ctx, lambda order: order.confirm_receipt(command.buyer_id), refuse_unknown=True)


@handlers.on(PaymentCaptured, loads=BY_ORDER)
def payment_captured(event: PaymentCaptured, ctx: HandlerContext) -> None:
    _advance(
        event.order_id,
        ctx,
        lambda order: order.payment_captured(event.breakdown),
        answers={"amount": event.amount, "buyer_id": event.buyer_id},
    )


@handlers.on(PaymentFailed, loads=BY_ORDER)
def payment_failed(event: PaymentFailed, ctx: HandlerContext) -> None:
    _advance(
        event.order_id,
        ctx,
        lambda order: order.payment_failed(f"{event.reason}: {event.detail}"),
        answers={"amount": event.amount, "buyer_id": event.buyer_id},
    )


@handlers.on(FundsHeld, loads=BY_ORDER)
def funds_held(event: FundsHeld, ctx: HandlerContext) -> None:
    parties = {"amount": event.amount, "buyer_id": event.buyer_id, "seller_id": event.seller_id}
    _advance(event.order_id, ctx, Order.funds_held, answers=parties)


@handlers.on(FundsReleased, loads=BY_ORDER)
def funds_released(event: FundsReleased, ctx: HandlerContext) -> None:
    # Escrow releases what it still holds: the price less what went back to the buyer.
    released = {"amount": event.amount, "seller_id": event.seller_id, "held": True}
    _advance(event.order_id, ctx, Order.funds_released, answers=released)


# ---------------------------------------------------------------------- refunds (P6)


@handlers.on(RequestRefund, loads=BY_REFUND)
def request_refund(command: RequestRefund, ctx: HandlerContext) -> None:
    order = ctx.get(ORDERS, command.order_id)
    if order is None:
        raise unknown_order(command.order_id)
    known = ctx.get(REFUNDS, (command.order_id, command.refund_id))
    if known is not None:
        known.check_same_request(command.amount)
        log.info("repeated refund request changes nothing", order_id=order.order_id, refund_id=known.refund_id)
        return
    refund, step = order.request_refund(command.refund_id, command.amount, command.reason)
    ctx.add(REFUNDS, refund)
    _apply(order, step, ctx)


@handlers.on(FundsReturned, loads=BY_REFUND)
def funds_returned(event: FundsReturned, ctx: HandlerContext) -> None:
    _advance_refund(event, ctx, Order.funds_returned)


@handlers.on(PaymentRefunded, loads=BY_REFUND)
def payment_refunded(event: PaymentRefunded, ctx: HandlerContext) -> None:
    _advance_refund(event, ctx, Order.payment_refunded)


@handlers.on(RefundFailed, loads=BY_REFUND)
def refund_failed(event: RefundFailed, ctx: HandlerContext) -> None:
    reason = f"{event.reason}: {event.detail}"

    def fail(order: Order, refund: Refund) -> Step:
        step = order.refund_failed(refund, reason)
        if step.announce is not None:  # money left escrow but did not reach the buyer: an operator's case
            log.error(
                "refund failed: out of escrow, not back with the buyer",
                order_id=order.order_id,
                refund_id=refund.refund_id,
                amount=str(refund.amount),
                reason=reason,
            )
        return step

    _advance_refund(event, ctx, fail)


# ---------------------------------------------------------------------- mechanism


def _advance(
    order_id: str,
    ctx: HandlerContext,
    decide: Callable[[Order], Step],
    *,
    refuse_unknown: bool = False,
    answers: dict[str, Any] | None = None,
) -> None:
    order = ctx.get(ORDERS, order_id)
    if order is None:
        if refuse_unknown:
            raise unknown_order(order_id)
        log.info("event for an order the saga does not know", order_id=order_id)
        return
    if answers is not None and not order.answers(**answers):
        log.warning("event does not match the order's amount or parties; ignored", order_id=order_id)
        return
    _apply(order, decide(order), ctx)


def _advance_refund(event: RefundEvent, ctx: HandlerContext, decide: Callable[[Order, Refund], Step]) -> None:
    """A refund's event moves the refund on, once it is known to answer that refund of that order."""
    order = ctx.get(ORDERS, event.order_id)
    refund = ctx.get(REFUNDS, (event.order_id, event.refund_id))
    if order is None or refund is None:
        log.info("event for a refund the saga does not know", order_id=event.order_id, refund_id=event.refund_id)
        return
    if not order.answers_refund(refund, amount=event.amount, buyer_id=event.buyer_id):
        log.warning(
            "event does not match the refund's amount or the order's buyer; ignored",
            order_id=event.order_id,
            refund_id=event.refund_id,
        )
        return
    _apply(order, decide(order, refund), ctx)


def _apply(order: Order, step: Step, ctx: HandlerContext) -> None:
    if step.to_status is None and not step.commands:
        log.info("duplicate or late message changes nothing", order_id=order.order_id, status=order.status.value)
        return
    if step.changed:
        assert step.to_status is not None
        ctx.append(
            TRANSITIONS,
            {
                "order_id": order.order_id,
                "from_status": step.from_status.value if step.from_status else None,
                "to_status": step.to_status.value,
                "cause_type": ctx.envelope.type,
                "cause_message_id": str(ctx.envelope.message_id),
                "at": ctx.now,
            },
        )
        _announce(order, ctx, f"status:{order.order_id}:{order.status.value}")
    elif step.announce is not None:
        _announce(order, ctx, f"status:{order.order_id}:{order.status.value}:{step.announce}")
    for command in step.commands:
        ctx.emit(command, idempotency_key=_command_key(order.order_id, command))


def _announce(order: Order, ctx: HandlerContext, idempotency_key: str) -> None:
    ctx.emit(
        OrderStatusChanged(
            order_id=order.order_id,
            buyer_id=order.buyer_id,
            seller_id=order.seller_id,
            amount=order.amount,
            status=order.status,
            reason=order.reason,
            refunded=order.refunded if order.refunded_minor else None,
        ),
        idempotency_key=idempotency_key,
    )


def _command_key(order_id: str, command: Command) -> str:
    """One key per command of an order; an order has many refunds, each commanded once."""
    if isinstance(command, ReturnFunds | RefundPayment):
        return f"{command.message_type}:{order_id}:{command.refund_id}"
    return f"{command.message_type}:{order_id}"
