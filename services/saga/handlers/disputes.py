"""E3: the buyer opens a dispute, the seller answers, an operator resolves."""

from __future__ import annotations

from typing import Any

from contracts import AnswerDispute, OpenDispute, ResolveDispute
from services.saga.domain import Dispute, OrderRuleBroken
from services.saga.domain.refunds import DISPUTE_REFUND
from services.saga.handlers import apply, handlers, log
from services.saga.handlers.orders import order_or_refuse
from services.saga.ports import policy
from services.saga.store import DISPUTES, ORDERS, REFUNDS
from shared.aggregates import Load
from shared.consumer import HandlerContext

BY_DISPUTE: list[Load[Any]] = [
    ORDERS.by("order_id"),
    DISPUTES.by("order_id"),
    REFUNDS.by(lambda message, _: (message.order_id, DISPUTE_REFUND)),
]


def _dispute_or_refuse(ctx: HandlerContext, order_id: str, dispute_id: str) -> Dispute:
    dispute = ctx.get(DISPUTES, order_id)
    if dispute is None:
        raise OrderRuleBroken("dispute_not_found", f"order {order_id} has no dispute {dispute_id}")
    dispute.check_is(dispute_id)
    return dispute


@handlers.on(OpenDispute, loads=BY_DISPUTE)
def open_dispute(command: OpenDispute, ctx: HandlerContext) -> None:
    order = order_or_refuse(ctx, command.order_id)
    existing = ctx.get(DISPUTES, command.order_id)
    if existing is not None:
        existing.check_same(command.dispute_id)
        log.info("repeated dispute changes nothing", order_id=order.order_id, dispute_id=command.dispute_id)
        return
    apply(order, order.open_dispute(command, ctx.now, policy(ctx)), ctx)


@handlers.on(AnswerDispute, loads=BY_DISPUTE)
def answer_dispute(command: AnswerDispute, ctx: HandlerContext) -> None:
    order = order_or_refuse(ctx, command.order_id)
    dispute = _dispute_or_refuse(ctx, command.order_id, command.dispute_id)
    step = order.answer_dispute(dispute, command.seller_id, command.statement, list(command.evidence), ctx.now)
    apply(order, step, ctx)


@handlers.on(ResolveDispute, loads=BY_DISPUTE)
def resolve_dispute(command: ResolveDispute, ctx: HandlerContext) -> None:
    order = order_or_refuse(ctx, command.order_id)
    dispute = _dispute_or_refuse(ctx, command.order_id, command.dispute_id)
    step = order.resolve_dispute(
        dispute, command.resolution, command.refund, f"operator:{command.operator_id}", command.reason
    )
    apply(order, step, ctx)
