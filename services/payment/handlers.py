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
from services.payment.store import PaymentStore
from shared.consumer import HandlerContext, MessageHandlers
from shared.logging import get_logger

handlers = MessageHandlers()
log = get_logger(__name__)


@handlers.on(CapturePayment)
async def capture_payment(command: CapturePayment, ctx: HandlerContext) -> None:
    store = PaymentStore(ctx.connection)
    payment = await store.get(command.order_id)
    if payment is not None:
        payment.check_same_request(command.buyer_id, command.amount)
        _repeat_outcome(payment, ctx)
        return
    payment = Payment(command.order_id, command.buyer_id, command.amount)
    await store.add(payment)
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


@handlers.on(WalletDebited)
async def wallet_debited(event: WalletDebited, ctx: HandlerContext) -> None:
    store = PaymentStore(ctx.connection)
    payment = await store.get(event.order_id)
    if payment is None or not payment.capture():
        log.info("wallet debit needs no action", order_id=event.order_id)
        return
    await store.save_outcome(payment)
    ctx.emit(_captured(payment), idempotency_key=f"captured:{payment.order_id}")


@handlers.on(WalletDebitDeclined)
async def wallet_debit_declined(event: WalletDebitDeclined, ctx: HandlerContext) -> None:
    store = PaymentStore(ctx.connection)
    payment = await store.get(event.order_id)
    if payment is None or not payment.fail(event.reason.value, event.detail):
        log.info("declined debit needs no action", order_id=event.order_id)
        return
    await store.save_outcome(payment)
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
        permanent=True,  # every wallet decline is permanent; transient network faults come with cards
    )
