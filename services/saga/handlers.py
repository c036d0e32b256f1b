"""Saga handlers: load the order, let the rules decide, store the step, send what it says."""

from __future__ import annotations

from collections.abc import Callable

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
from services.saga.store import OrderStore
from shared.consumer import HandlerContext, MessageHandlers
from shared.logging import get_logger

handlers = MessageHandlers()
log = get_logger(__name__)


@handlers.on(Checkout)
async def checkout(command: Checkout, ctx: HandlerContext) -> None:
    store = OrderStore(ctx.connection)
    existing = await store.get(command.order_id)
    if existing is not None:
        existing.check_same_checkout(command)
        log.info("repeated checkout ignored", order_id=command.order_id, status=existing.status.value)
        return
    order, step = Order.place(command)
    await store.add(order)
    await _apply(order, step, ctx, store, saved=True)


@handlers.on(ConfirmReceipt)
async def confirm_receipt(command: ConfirmReceipt, ctx: HandlerContext) -> None:
    await _advance(command.order_id, ctx, lambda order: order.confirm_receipt(command.buyer_id), refuse_unknown=True)


@handlers.on(PaymentCaptured)
async def payment_captured(event: PaymentCaptured, ctx: HandlerContext) -> None:
    await _advance(event.order_id, ctx, Order.payment_captured)


@handlers.on(PaymentFailed)
async def payment_failed(event: PaymentFailed, ctx: HandlerContext) -> None:
    await _advance(event.order_id, ctx, lambda order: order.payment_failed(f"{event.reason}: {event.detail}"))


@handlers.on(FundsHeld)
async def funds_held(event: FundsHeld, ctx: HandlerContext) -> None:
    await _advance(event.order_id, ctx, Order.funds_held)


@handlers.on(FundsReleased)
async def funds_released(event: FundsReleased, ctx: HandlerContext) -> None:
    await _advance(event.order_id, ctx, Order.funds_released)


async def _advance(
    order_id: str, ctx: HandlerContext, decide: Callable[[Order], Step], *, refuse_unknown: bool = False
) -> None:
    store = OrderStore(ctx.connection)
    order = await store.get(order_id)
    if order is None:
        if refuse_unknown:
            raise unknown_order(order_id)
        log.info("event for an order the saga does not know", order_id=order_id)
        return
    step = decide(order)
    await _apply(order, step, ctx, store)


async def _apply(order: Order, step: Step, ctx: HandlerContext, store: OrderStore, *, saved: bool = False) -> None:
    if step.to_status is None and not step.commands:
        log.info("duplicate or late message changes nothing", order_id=order.order_id, status=order.status.value)
        return
    if step.changed:
        if not saved:
            await store.save(order)
        await store.record_transition(order.order_id, step, ctx.envelope.type, str(ctx.envelope.message_id))
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
