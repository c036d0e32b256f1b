"""Payment service handlers: the buyer's account authorises each payment (A5, A6: grant,
source, security check, balance), then the source pays: the wallet is debited by that same
authorisation; cards and bank accounts are charged on the funding network (P1)."""

from __future__ import annotations

from contracts import (
    AuthorizePayment,
    CapturePayment,
    FundingType,
    PaymentAuthorizationDeclined,
    PaymentAuthorized,
    PaymentCaptured,
    PaymentFailed,
)
from services.payment.domain.payments import UNAVAILABLE_FUNDING, Payment, PaymentStatus
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
        AuthorizePayment(
            account_id=command.buyer_id,
            order_id=command.order_id,
            marketplace_id=command.marketplace_id,
            amount=command.amount,
            source_id=command.source_id,
            security_method=command.security_method,
            security_proof=command.security_proof,
        ),
        idempotency_key=f"authorize:{command.order_id}",
    )


def _repeat_outcome(payment: Payment, ctx: HandlerContext) -> None:
    """A repeated capture gets the first result (nothing yet while the debit is in flight)."""
    if payment.status is PaymentStatus.CAPTURED:
        ctx.emit(_captured(payment))
    elif payment.status is PaymentStatus.FAILED:
        ctx.emit(_failed(payment))


@handlers.on(PaymentAuthorized, loads=[PAYMENTS.by("order_id")])
def payment_authorized(event: PaymentAuthorized, ctx: HandlerContext) -> None:
    payment = ctx.get(PAYMENTS, event.order_id)
    if payment is None or not payment.answers(event.account_id, event.amount):
        log.warning("authorisation that answers no payment of ours ignored", order_id=event.order_id)
        return
    if event.funding_type is FundingType.WALLET:
        if payment.capture():  # the account debited the wallet as it authorised
            ctx.emit(_captured(payment), idempotency_key=f"captured:{payment.order_id}")
        return
    # Charging a card or bank account needs the funding network port, which the payment
    # issue (P1) adds; until then such a payment fails, transiently, saying so.
    detail = f"paying by {event.funding_type.value} is not available yet; pay from the wallet balance"
    if payment.fail(UNAVAILABLE_FUNDING, detail):
        ctx.emit(_failed(payment), idempotency_key=f"failed:{payment.order_id}")


@handlers.on(PaymentAuthorizationDeclined, loads=[PAYMENTS.by("order_id")])
def payment_declined(event: PaymentAuthorizationDeclined, ctx: HandlerContext) -> None:
    payment = ctx.get(PAYMENTS, event.order_id)
    if payment is None or not payment.answers(event.account_id, event.amount):
        log.warning("declined authorisation that answers no payment of ours ignored", order_id=event.order_id)
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
