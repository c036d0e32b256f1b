"""Saga handlers: find the order, let the rules decide, record the step, send what it says.

orders.py: the marketplace's and the buyer's commands (checkout, pay again, confirm receipt,
extend protection) and the operator's actions (S6); payments.py and escrow.py: the answers
of the payment and escrow services; refunds.py: refunds (P6) and compensations (S3);
disputes.py: E3; timers.py: the deadline sweeper's nudges (S4). The mechanism every one of
them ends in is :func:`apply`, here.
"""

from __future__ import annotations

from contracts import (
    CapturePayment,
    DisputeAnswered,
    DisputeOpened,
    DisputeResolved,
    FreezeFunds,
    HoldFunds,
    Message,
    OperatorActionTaken,
    OrderStatus,
    OrderStatusChanged,
    RefundPayment,
    ReleaseFunds,
    ReturnFunds,
)
from services.saga.domain import Order, Step
from services.saga.domain.orders import PAYING
from services.saga.store import AUDIT, DISPUTES, ORDERS, REFUNDS
from shared.consumer import HandlerContext, MessageHandlers
from shared.logging import get_logger

handlers = MessageHandlers()
log = get_logger(__name__)
BY_ORDER = [ORDERS.by("order_id")]


def apply(order: Order, step: Step, ctx: HandlerContext) -> None:
    """Store what the step created, announce a status change, send its messages, and leave a
    row in the order's audit trail (a duplicate or late message too: it changed nothing)."""
    if not step.did_something:
        log.info("duplicate or late message changes nothing", order_id=order.order_id, status=order.status.value)
        _audit(order, step, ctx, note="duplicate or late: changed nothing")
        return
    if step.refund is not None:
        ctx.add(REFUNDS, step.refund)
    if step.dispute is not None:
        ctx.add(DISPUTES, step.dispute)
    if step.changed:
        _announce(order, ctx, _status_key(order))
    elif step.announce is not None:
        _announce(order, ctx, f"status:{order.order_id}:{order.status.value}:{step.announce}")
    for message in step.messages:
        message_id = ctx.emit(message, idempotency_key=message_key(order.order_id, message))
        if (slot := answer_slot(message)) is not None:
            order.sent = {**order.sent, slot: message_id}
    _audit(order, step, ctx)


def _audit(order: Order, step: Step, ctx: HandlerContext, *, note: str | None = None) -> None:
    ctx.append(
        AUDIT,
        {
            "order_id": order.order_id,
            "at": ctx.now,
            "cause_type": ctx.envelope.type,
            "cause_message_id": str(ctx.envelope.message_id),
            "from_status": step.from_status.value if step.from_status else None,
            "to_status": step.to_status.value if step.changed and step.to_status else None,  # a move, not a stay
            "sent": ",".join(m.message_type for m in step.messages),
            "note": step.note if note is None else note,
        },
    )


def _status_key(order: Order) -> str:
    """One announcement per status reached; an order reaches a paying status once per attempt,
    and is cancelled a second time after the compensation of a late payment."""
    key = f"status:{order.order_id}:{order.status.value}"
    if order.status in PAYING and order.attempt > 1:
        return f"{key}:{order.attempt}"
    if order.refunded_minor and order.status is OrderStatus.CANCELLED:
        return f"{key}:compensated"
    return key


def _announce(order: Order, ctx: HandlerContext, idempotency_key: str) -> None:
    upcoming = order.next_deadline()
    ctx.emit(
        OrderStatusChanged(
            order_id=order.order_id,
            buyer_id=order.buyer_id,
            seller_id=order.seller_id,
            amount=order.amount,
            status=order.status,
            reason=order.reason,
            refunded=order.refunded if order.refunded_minor else None,
            next_deadline=None if upcoming is None else upcoming[0],
            next_deadline_at=None if upcoming is None else upcoming[1],
        ),
        idempotency_key=idempotency_key,
    )


def answer_slot(message: Message) -> str | None:
    """Under which name the saga remembers a command whose answer it will check the cause of:
    escrow's answers name the command they answer (their causation id)."""
    if isinstance(message, HoldFunds | ReleaseFunds | FreezeFunds):
        return message.message_type
    if isinstance(message, ReturnFunds):
        return f"ReturnFunds:{message.refund_id}"
    return None


def message_key(order_id: str, message: Message) -> str:
    """One key per message the saga sends about an order: the receiving service treats a repeat
    as the same command. An order has many refunds, attempts and a dispute, each sent once."""
    base = f"{message.message_type}:{order_id}"
    if isinstance(message, RefundPayment) and message.attempt > 1:
        return f"{base}:{message.refund_id}:{message.attempt}"
    if isinstance(message, ReturnFunds | RefundPayment):
        return f"{base}:{message.refund_id}"
    if isinstance(message, CapturePayment) and message.attempt > 1:
        return f"{base}:{message.attempt}"
    if isinstance(message, FreezeFunds | DisputeOpened | DisputeAnswered | DisputeResolved):
        return f"{base}:{message.dispute_id}"
    if isinstance(message, OperatorActionTaken):
        return f"{base}:{message.action_id}"
    release_at = getattr(message, "release_at", None)  # a reminder or an extension: once per release time
    return base if release_at is None else f"{base}:{release_at.isoformat()}"


# Imported for their registrations on `handlers`.
from services.saga.handlers import disputes, escrow, orders, payments, refunds, timers  # noqa: E402

__all__ = [
    "answer_slot",
    "apply",
    "disputes",
    "escrow",
    "handlers",
    "message_key",
    "orders",
    "payments",
    "refunds",
    "timers",
]
