"""P6 handlers: the saga asks for a refund (``RefundPayment``, one per refund id); the rules
(services/payment/domain/refunds.py) decide what the buyer gets back and where; the wallet part
is credited by the account service (``CreditWallet``, one credit per ``refund:<id>``) and the
card or bank part refunded on the funding network by the network worker. ``PaymentRefunded``
follows once every part is done, ``RefundFailed`` when the network will not take its part.

The wallet part counts as done once its ``CreditWallet`` is stored: the outbox publishes it
with this batch's commit and the account service applies one credit per reference, so it
cannot be lost or paid twice.

The network's answers reach :func:`record_refund_answer` through ``record_network_answer``
(handlers/payments.py), which hands it every answer of a refund kind: one handler per message
type, and the network worker reports charges and refunds with the same command.
"""

from __future__ import annotations

from contracts import (
    CreditWallet,
    Money,
    NetworkRequestKind,
    PaymentRefunded,
    RecordNetworkAnswer,
    RefundFailed,
    RefundLeg,
    RefundPayment,
)
from services.payment.domain.network import REFUND_KINDS, NetworkRequest, Step
from services.payment.domain.payments import TRANSIENT_REASONS, Payment
from services.payment.domain.refunds import Refund, RefundStatus, accept_refund, refundable
from services.payment.handlers import handlers
from services.payment.ports import ports
from services.payment.store import NETWORK_REQUESTS, PAYMENTS, REFUNDS
from shared.consumer import HandlerContext
from shared.logging import get_logger

log = get_logger(__name__)

_REQUEST_PREFIX = "refund:"


def refund_request_id(refund_id: str) -> str:
    """The refund's card or bank part on the network: the same id on every attempt (its idempotency key)."""
    return f"{_REQUEST_PREFIX}{refund_id}"


def is_refund_answer(command: RecordNetworkAnswer) -> bool:
    """Whether a network answer is about a refund (else it is about a charge)."""
    return command.kind in REFUND_KINDS


def _refund_of_answer(command: RecordNetworkAnswer) -> str | None:
    if not is_refund_answer(command) or not command.request_id.startswith(_REQUEST_PREFIX):
        return None  # a charge's answer reads no refund
    return command.request_id.removeprefix(_REQUEST_PREFIX)


REFUND = REFUNDS.by("refund_id")
REFUND_REQUEST = NETWORK_REQUESTS.by(lambda command, _: refund_request_id(command.refund_id))
REFUND_OF_ANSWER = REFUNDS.by(lambda command, _: _refund_of_answer(command))
"""For ``record_network_answer``'s loads: the refund a network answer is about (none for a charge)."""


@handlers.on(RefundPayment, loads=[PAYMENTS.by("order_id"), REFUND, REFUND_REQUEST], keyed=True)
def refund_payment(command: RefundPayment, ctx: HandlerContext) -> None:
    """Keyed: a repeat under the same idempotency key gets the first handling's records again
    (another amount under it: idempotency_conflict). The refund's own row answers a repeat of
    the refund id under another key the same way."""
    refund = ctx.read(REFUND, command)
    if refund is not None:
        refund.check_same_request(command.order_id, command.amount, command.reason)
        if refund.retry(command.attempt):
            _send_again(refund, ctx)
        else:
            _repeat_outcome(refund, ctx)
        return
    payment = ctx.get(PAYMENTS, command.order_id)
    refund = accept_refund(payment, command.order_id, command.refund_id, command.amount, command.reason)
    refund.attempt = command.attempt
    ctx.add(REFUNDS, refund)
    assert payment is not None  # accept_refund refuses an order without a captured payment
    if refund.wallet_part.amount_minor > 0:
        ctx.emit(
            CreditWallet(
                account_id=refund.buyer_id,
                order_id=refund.order_id,
                amount=refund.wallet_part,
                reference=refund_request_id(refund.refund_id),
            ),
            idempotency_key=f"refund-wallet:{refund.refund_id}",
        )
    if refund.needs_network:
        _send_to_network(refund, payment, ctx)
    else:
        _complete(refund, payment, ctx)


def _send_to_network(refund: Refund, payment: Payment, ctx: HandlerContext) -> None:
    """The card or bank part becomes a request the network worker sends."""
    assert payment.charge_id is not None  # accept_refund refuses a card part without the charge
    refund_on_network(refund_request_id(refund.refund_id), refund.order_id, refund.source_part, payment.charge_id, ctx)


def refund_on_network(request_id: str, order_id: str, amount: Money, charge_id: str, ctx: HandlerContext) -> None:
    """Store a refund of ``amount`` of charge ``charge_id`` for the network worker to send
    (no token: a refund names the charge it gives back)."""
    request = NetworkRequest(
        request_id, order_id, token="", amount=amount, kind=NetworkRequestKind.REFUND, charge_id=charge_id
    )
    ctx.add(NETWORK_REQUESTS, request)
    ctx.after_commit(ports(ctx).wake_worker)


def _send_again(refund: Refund, ctx: HandlerContext) -> None:
    """A failed refund tried again (S3): its card or bank part, the only part that can fail."""
    request = ctx.get(NETWORK_REQUESTS, refund_request_id(refund.refund_id))
    assert request is not None, "a refund fails only on its network part"
    request.send_again(ctx.now)
    log.info("failed refund tried again", order_id=refund.order_id, refund_id=refund.refund_id, attempt=refund.attempt)
    ctx.after_commit(ports(ctx).wake_worker)


def _repeat_outcome(refund: Refund, ctx: HandlerContext) -> None:
    """The first result again; nothing while the network part is in flight (it follows)."""
    if refund.status is RefundStatus.REFUNDED:
        ctx.emit(_refunded(refund))
    elif refund.status is RefundStatus.FAILED:
        ctx.emit(_refund_failed(refund))


def record_refund_answer(command: RecordNetworkAnswer, ctx: HandlerContext) -> None:
    """What the funding network answered about a refund's card or bank part (P4, P6); reached
    through ``record_network_answer``, whose loads include :data:`REFUND_OF_ANSWER`."""
    refund = ctx.read(REFUND_OF_ANSWER, command) if _refund_of_answer(command) is not None else None
    request = ctx.get(NETWORK_REQUESTS, command.request_id)
    payment = ctx.get(PAYMENTS, command.order_id)
    if refund is None or request is None or payment is None or not _answers(refund, request, command):
        log.warning("network answer that answers no refund of ours ignored", order_id=command.order_id)
        return
    step = request.answer(command.kind, command.outcome, command.reason, ctx.now)
    if step is Step.REFUNDED:
        _complete(refund, payment, ctx)
    elif step in {Step.FAIL_PERMANENTLY, Step.FAIL_TRANSIENTLY}:
        reason = _failure_reason(step, command.reason)
        if refund.fail(reason, _failure_detail(reason, request.attempts)):
            log.warning("refund needs an operator", order_id=refund.order_id, refund_id=refund.refund_id, reason=reason)
            ctx.emit(_refund_failed(refund), idempotency_key=f"refund-failed:{refund.refund_id}:{refund.attempt}")
    elif step is Step.WAIT:
        ctx.after_commit(ports(ctx).wake_worker)


def _answers(refund: Refund, request: NetworkRequest, command: RecordNetworkAnswer) -> bool:
    """An answer counts only as the answer to the request this refund stored."""
    return refund.order_id == request.order_id == command.order_id and request.amount == command.amount


def _complete(refund: Refund, payment: Payment, ctx: HandlerContext) -> None:
    if refund.complete(refundable(payment)):
        ctx.emit(_refunded(refund), idempotency_key=f"refunded:{refund.refund_id}")


def _failure_reason(step: Step, reason: str | None) -> str:
    if step is Step.FAIL_TRANSIENTLY:
        return reason if reason in TRANSIENT_REASONS else "issuer_unavailable"
    return reason or "refund_declined"


def _failure_detail(reason: str, attempts: int) -> str:
    if reason in TRANSIENT_REASONS:
        return (
            f"the card issuer did not take the refund after {attempts} attempts ({reason}); "
            "an operator will give it back by hand"
        )
    return f"the funding network refused the refund ({reason}); an operator will give it back by hand"


def _refunded(refund: Refund) -> PaymentRefunded:
    assert refund.remaining is not None, "a refunded refund knows what remained"
    return PaymentRefunded(
        order_id=refund.order_id,
        buyer_id=refund.buyer_id,
        refund_id=refund.refund_id,
        amount=refund.amount,
        refunded=refund.buyer_amount,
        legs=[RefundLeg(funding_type=kind, amount=amount) for kind, amount in refund.legs],
        remaining=refund.remaining,
    )


def _refund_failed(refund: Refund) -> RefundFailed:
    return RefundFailed(
        order_id=refund.order_id,
        buyer_id=refund.buyer_id,
        refund_id=refund.refund_id,
        amount=refund.amount,
        reason=refund.failure_reason or "refund_declined",
        detail=refund.failure_detail or "",
        attempt=refund.attempt,
    )
