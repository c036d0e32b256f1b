"""Saga handlers: find the order, let the rules decide, record the step, send what it says."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from contracts import (
    Checkout,
    ConfirmReceipt,
    FundsHeld,
    FundsReleased,
    OrderStatusChanged,
    PaymentCaptured,
    PaymentFailed,
)
from services.saga.domain import Order, Step, unknown_order
from services.saga.store import ORDERS, TRANSITIONS
from shared.consumer import HandlerContext, MessageHandlers
from shared.logging import get_logger

handlers = MessageHandlers()
log = get_logger(__name__)
BY_ORDER = [ORDERS.by("order_id")]


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
    _advance(event.order_id, ctx, Order.payment_captured, answers={"amount": event.amount, "buyer_id": event.buyer_id})


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
    _advance(event.order_id, ctx, Order.funds_released, answers={"amount": event.amount, "seller_id": event.seller_id})


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
        ctx.emit(
            OrderStatusChanged(
                order_id=order.order_id,
                buyer_id=order.buyer_id,
                seller_id=order.seller_id,
                amount=order.amount,
                status=order.status,
                reason=order.reason,
            ),
            idempotency_key=f"status:{order.order_id}:{order.status.value}",
        )
    for command in step.commands:
        ctx.emit(command, idempotency_key=f"{command.message_type}:{order.order_id}")
