"""Escrow's answers: held (the protection starts), released (pay the seller), frozen, and a
refused command (a refused hold is compensated; any other refusal is an operator's)."""

from __future__ import annotations

from contracts import CommandRejected, FundsFrozen, FundsHeld, FundsReleased
from services.saga.domain import COMPENSATION
from services.saga.handlers import BY_ORDER, apply, handlers, log
from services.saga.ports import policy
from services.saga.store import DISPUTES, ORDERS, REFUNDS
from shared.consumer import HandlerContext

SENT_BY_THE_SAGA = frozenset(
    {"CapturePayment", "RefundPayment", "HoldFunds", "ReleaseFunds", "ReturnFunds", "FreezeFunds"}
)


@handlers.on(FundsHeld, loads=BY_ORDER)
def funds_held(event: FundsHeld, ctx: HandlerContext) -> None:
    order = ctx.get(ORDERS, event.order_id)
    if (
        order is None
        or not order.answers(amount=event.amount, buyer_id=event.buyer_id, seller_id=event.seller_id)
        or not order.caused_by_us("HoldFunds", ctx.envelope.causation_id)
    ):
        log.warning("hold that answers no HoldFunds of ours ignored", order_id=event.order_id)
        return
    apply(order, order.funds_held(ctx.now, policy(ctx)), ctx)


@handlers.on(FundsReleased, loads=BY_ORDER)
def funds_released(event: FundsReleased, ctx: HandlerContext) -> None:
    order = ctx.get(ORDERS, event.order_id)
    # Escrow releases what it still holds: the price less what went back to the buyer.
    if (
        order is None
        or not order.answers(amount=event.amount, seller_id=event.seller_id, held=True)
        or not order.caused_by_us("ReleaseFunds", ctx.envelope.causation_id)
    ):
        log.warning("release that answers no ReleaseFunds of ours ignored", order_id=event.order_id)
        return
    apply(order, order.funds_released(), ctx)


@handlers.on(FundsFrozen, loads=[ORDERS.by("order_id"), DISPUTES.by("order_id")])
def funds_frozen(event: FundsFrozen, ctx: HandlerContext) -> None:
    order = ctx.get(ORDERS, event.order_id)
    if order is None or not order.caused_by_us("FreezeFunds", ctx.envelope.causation_id):
        log.warning("freeze that answers no FreezeFunds of ours ignored", order_id=event.order_id)
        return
    apply(order, order.funds_frozen(ctx.get(DISPUTES, event.order_id), event.dispute_id), ctx)


@handlers.on(
    CommandRejected,
    loads=[ORDERS.by("subject_id"), REFUNDS.by(lambda message, _: (message.subject_id, COMPENSATION))],
)
def command_rejected(event: CommandRejected, ctx: HandlerContext) -> None:
    """Escrow or the payment refused a command the saga sent about an order."""
    order = ctx.get(ORDERS, event.subject_id)
    if order is None or event.rejected_type not in SENT_BY_THE_SAGA:
        return  # another client's command (a quote the marketplace asked for): its answer, not ours
    if event.rejected_type == "HoldFunds" and not order.caused_by_us("HoldFunds", event.rejected_message_id):
        log.warning("refusal of a HoldFunds the saga did not send ignored", order_id=order.order_id)
        return
    if event.rejected_type == "HoldFunds":
        apply(order, order.hold_refused(event.code, event.reason), ctx)
        return
    log.error(
        "a command the saga sent was refused",
        order_id=order.order_id,
        command=event.rejected_type,
        code=event.code,
        reason=event.reason,
    )
    order.attention = f"{event.rejected_type} was refused ({event.code}): {event.reason}"
    apply(order, order.noted(f"{event.rejected_type} refused ({event.code}): an operator must look"), ctx)
