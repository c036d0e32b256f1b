"""The marketplace's and the buyer's commands about an order, and the operator's actions (S6)."""

from __future__ import annotations

from datetime import datetime

from contracts import (
    Checkout,
    ConfirmReceipt,
    ExtendProtection,
    OperatorActionTaken,
    OperatorOrderAction,
    PayAgain,
)
from services.saga.domain import Order, OrderRuleBroken, Step, unknown_order
from services.saga.handlers import BY_ORDER, apply, handlers, log
from services.saga.ports import policy
from services.saga.store import ORDERS
from shared.consumer import HandlerContext


def order_or_refuse(ctx: HandlerContext, order_id: str) -> Order:
    order = ctx.get(ORDERS, order_id)
    if order is None:
        raise unknown_order(order_id)
    return order


@handlers.on(Checkout, loads=BY_ORDER)
def checkout(command: Checkout, ctx: HandlerContext) -> None:
    existing = ctx.get(ORDERS, command.order_id)
    if existing is not None:
        existing.check_same_checkout(command)
        log.info("repeated checkout ignored", order_id=command.order_id, status=existing.status.value)
        return
    order, step = Order.place(command, ctx.now, policy(ctx))
    apply(ctx.add(ORDERS, order), step, ctx)


@handlers.on(PayAgain, loads=BY_ORDER)
def pay_again(command: PayAgain, ctx: HandlerContext) -> None:
    order = order_or_refuse(ctx, command.order_id)
    apply(order, order.pay_again(command, ctx.now), ctx)


@handlers.on(ConfirmReceipt, loads=BY_ORDER)
def confirm_receipt(command: ConfirmReceipt, ctx: HandlerContext) -> None:
    order = order_or_refuse(ctx, command.order_id)
    apply(order, order.confirm_receipt(command.buyer_id), ctx)


@handlers.on(ExtendProtection, loads=BY_ORDER)
def extend_protection(command: ExtendProtection, ctx: HandlerContext) -> None:
    order = order_or_refuse(ctx, command.order_id)
    apply(order, order.extend_protection(command.buyer_id, ctx.now, policy(ctx)), ctx)


@handlers.on(OperatorOrderAction, loads=BY_ORDER)
def operator_action(command: OperatorOrderAction, ctx: HandlerContext) -> None:
    """Retry now, cancel, or compensate now: each once per action id, each on the audit trail."""
    order = order_or_refuse(ctx, command.order_id)
    if command.action_id in order.actions:
        log.info("repeated operator action ignored", order_id=order.order_id, action_id=command.action_id)
        apply(order, order.noted(f"operator action {command.action_id} repeated: ignored"), ctx)
        return
    step = _carry_out(order, command, ctx.now)
    order.actions = [*order.actions, command.action_id][-50:]
    outcome = step.note or "nothing to do"
    step.messages.append(
        OperatorActionTaken(
            order_id=order.order_id,
            action_id=command.action_id,
            action=command.action,
            operator_id=command.operator_id,
            reason=command.reason,
            outcome=outcome,
        )
    )
    step.note = f"operator {command.operator_id} {command.action} ({command.reason}): {outcome}"
    apply(order, step, ctx)


def _carry_out(order: Order, command: OperatorOrderAction, now: datetime) -> Step:
    why = f"operator {command.operator_id}"
    if command.action == "cancel":
        return order.cancel_by_operator(command.operator_id, command.reason)
    if command.action == "retry_now":
        step = order.retry_payment(f"{why}: retry now", now)
        if not step.did_something:
            step = order.retry_refund(f"{why}: retry now", reset=True)
    else:  # compensate_now: the compensation or refund under way is paid again at once
        step = order.retry_refund(f"{why}: compensate now", reset=True)
    if not step.did_something:
        raise OrderRuleBroken(
            "nothing_to_do",
            f"order {order.order_id} is {order.status.value}: nothing is waiting for {command.action.replace('_', ' ')}",
        )
    return step
