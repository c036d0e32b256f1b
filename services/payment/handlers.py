"""Payment service handlers: capture an order's amount from the buyer's wallet."""

from __future__ import annotations

from contracts import (
    CapturePayment,
    DebitWallet,
    PaymentCaptured,
    PaymentFailed,
    WalletDebitDeclined,
    WalletDebited,
)
from services.payment.domain import Payment, PaymentStatus
from services.payment.store import PAYMENTS
from shared.consumer import HandlerContext, MessageHandlers
from shared.logging import get_logger

handlers = MessageHandlers()
log = get_logger(__name__)


@handlers.on(CapturePayment, loads=[PAYMENTS.by("order_id")])
def capture_payment(command: CapturePayment, ctx: HandlerContext) -> None:
    payment = ctx.get(PAYMENTS, command.order_id)
    if payment is not None:
        payment.check_same_request(command.buyer_id, command.amount)
        _repeat_outcome(payment, ctx)
        return
    ctx.add(PAYMENTS, Payment(command.order_id, command.buyer_id, command.amount))
    ctx.emit(
        DebitWallet(account_id=command.buyer_id, order_id=command.order_id, amount=command.amount),
        idempotency_key=f"debit:{command.order_id}",
    )


def _repeat_outcome(payment: Payment, ctx: HandlerContext) -> None:
    """A repeated capture gets the first result (nothing yet while the debit is in flight)."""
    if payment.status is PaymentStatus.CAPTURED:
        ctx.emit(_captured(payment))
    elif payment.status is PaymentStatus.FAILED:
        ctx.emit(_failed(payment))


@handlers.on(WalletDebited, loads=[PAYMENTS.by("order_id")])
def wallet_debited(event: WalletDebited, ctx: HandlerContext) -> None:
    payment = ctx.get(PAYMENTS, event.order_id)
    if payment is None or not payment.answers(event.account_id, event.amount):
        log.warning("wallet debit that answers no debit of ours ignored", order_id=event.order_id)
        return
    if payment.capture():
        ctx.emit(_captured(payment), idempotency_key=f"captured:{payment.order_id}")


@handlers.on(WalletDebitDeclined, loads=[PAYMENTS.by("order_id")])
def wallet_debit_declined(event: WalletDebitDeclined, ctx: HandlerContext) -> None:
    payment = ctx.get(PAYMENTS, event.order_id)
    if payment is None or not payment.answers(event.account_id, event.amount):
        log.warning("declined debit that answers no debit of ours ignored", order_id=event.order_id)
        return
    if payment.fail(event.reason.value, event.detail):
        ctx.emit(_failed(payment), idempotency_key=f"failed:{payment.order_id}")


def _captured(payment: Payment) -> PaymentCaptured:
    return PaymentCaptured(order_id=payment.order_id, buyer_id=payment.buyer_id, amount=payment.amount)


def _failed(payment: Payment) -> PaymentFailed:
    return PaymentFailed(
        order_id=payment.order_id,
        buyer_id=payment.buyer_id,
        amount=payment.amount,
        reason=payment.failure_reason or "unknown",
        detail=payment.failure_detail or "",
        permanent=payment.failure_is_permanent,
    )
