"""Payment service handlers: the buyer's account authorises each payment (A5, A6: grant,
source, security check, balance), then the source pays: the wallet is debited by that same
authorisation; cards and bank accounts are charged on the funding network (P1).

S2: the saga may try an order's payment again after a failure (``CapturePayment.attempt``). The
payment row holds its current attempt; a new one starts afresh on it (priced, counted against the
limits, authorised, charged under ids of its own: ``Payment.attempt_key``), and an answer the
account or the network gives to an earlier attempt never decides the current one."""

from __future__ import annotations

from contracts import (
    AuthorizePayment,
    CapturePayment,
    CreditWallet,
    FundingType,
    PaymentAuthorizationDeclined,
    PaymentAuthorized,
    PaymentCaptured,
    PaymentFailed,
    RecordNetworkAnswer,
)
from services.payment.domain.network import NetworkRequest, Step
from services.payment.domain.payments import (
    FIRST_ATTEMPT,
    TRANSIENT_REASONS,
    AttemptAsked,
    Payment,
    PaymentStatus,
    per_attempt,
    wallet_leg_reference,
)
from services.payment.domain.pricing import Breakdown
from services.payment.handlers import handlers
from services.payment.handlers.limits import DAY, LIMITS, MONTH, count_against_limits, give_back
from services.payment.handlers.pricing import (
    BUDGETS,
    QUOTE,
    book_budgets,
    breakdown_message,
    price_capture,
    settle_budgets,
)
from services.payment.handlers.refunds import REFUND_OF_ANSWER, is_refund_answer, record_refund_answer
from services.payment.handlers.reversals import (
    REVERSAL_OF_ANSWER,
    is_late_charge,
    is_reversal_answer,
    record_reversal_answer,
    reverse_late_charge,
)
from services.payment.ports import ports
from services.payment.store import NETWORK_REQUESTS, PAYMENTS
from shared.consumer import HandlerContext
from shared.errors import CommandRefused
from shared.logging import get_logger

log = get_logger(__name__)


def charge_request_id(order_id: str, attempt: int = FIRST_ATTEMPT) -> str:
    """One charge per attempt at paying an order on the network: the same id however often that
    attempt's charge is sent (its idempotency key), another for the next attempt (S2)."""
    return per_attempt("charge", order_id, attempt)


CHARGE_REQUEST = NETWORK_REQUESTS.by(lambda event, _: charge_request_id(event.order_id, event.attempt))


@handlers.on(CapturePayment, loads=[PAYMENTS.by("order_id"), LIMITS, DAY, MONTH, QUOTE, BUDGETS])
def capture_payment(command: CapturePayment, ctx: HandlerContext) -> None:
    """A new payment, or another attempt at one (S2): see :class:`AttemptAsked` for what each
    attempt number gets; a later attempt while the current one is pending is refused
    (payment_in_progress)."""
    payment = ctx.get(PAYMENTS, command.order_id)
    if payment is None:
        payment = ctx.add(
            PAYMENTS,
            Payment(
                command.order_id, command.buyer_id, command.amount, attempt=command.attempt, quote_id=command.quote_id
            ),
        )
    else:
        asked = payment.attempt_asked(command.attempt)
        if asked is AttemptAsked.STALE:
            log.info(
                "capture of an earlier attempt ignored",
                order_id=command.order_id,
                attempt=command.attempt,
                current=payment.attempt,
            )
            return
        payment.check_same_request(command.buyer_id, command.amount)
        if asked is not AttemptAsked.NEW:  # the current attempt again, or the order is paid
            _repeat_outcome(payment, ctx)
            return
        payment.start_attempt(command.attempt, command.quote_id)
    _ask_account(command, payment, ctx)


def _ask_account(command: CapturePayment, payment: Payment, ctx: HandlerContext) -> None:
    """Price the attempt, count it against the buyer's limits and ask the account to authorise it."""
    try:
        breakdowns = price_capture(command, ctx)
    except CommandRefused as refused:  # an expired or foreign quote, a currency without a rate
        _fail_at_once(payment, refused.code, refused.reason, ctx)
        return
    refusal = count_against_limits(command, payment, ctx)
    if refusal is not None:
        _fail_at_once(payment, "limit_exceeded", refusal, ctx)
        return
    if breakdowns[FundingType.WALLET].rate is not None:  # domestic prices are the amount itself: nothing to keep
        payment.pricing = {"breakdowns": {kind.value: breakdown.to_dict() for kind, breakdown in breakdowns.items()}}
    book_budgets(payment, breakdowns, ctx)
    wallet, card, bank = (
        breakdowns[kind].total for kind in (FundingType.WALLET, FundingType.CARD, FundingType.BANK_ACCOUNT)
    )
    ctx.emit(
        AuthorizePayment(
            account_id=command.buyer_id,
            order_id=command.order_id,
            marketplace_id=command.marketplace_id,
            amount=wallet,
            card_amount=None if card == wallet else card,
            bank_account_amount=None if bank == wallet else bank,
            source_id=command.source_id,
            security_method=command.security_method,
            security_proof=command.security_proof,
            use_balance_first=command.use_balance_first,
            attempt=payment.attempt,
        ),
        idempotency_key=payment.attempt_key("authorize"),
    )


def _fail_at_once(payment: Payment, reason: str, detail: str, ctx: HandlerContext) -> None:
    """Failed before anything was counted or booked: nothing to give back."""
    payment.fail(reason, detail)
    ctx.emit(_failed(payment), idempotency_key=payment.attempt_key("failed"))


def _fail(payment: Payment, reason: str, detail: str, ctx: HandlerContext) -> None:
    """The attempt failed after it was counted, booked and perhaps paid in part: all of it goes
    back. The limits' share is given back before the failure is announced, so a next attempt the
    failure prompts finds it given back (both commands are keyed by order: one partition)."""
    if not payment.fail(reason, detail):
        return
    give_back(payment, ctx)
    ctx.emit(_failed(payment), idempotency_key=payment.attempt_key("failed"))
    settle_budgets(payment, ctx)
    _return_wallet_leg(payment, ctx)


def _repeat_outcome(payment: Payment, ctx: HandlerContext) -> None:
    """A repeated capture gets the first result (nothing yet while the debit is in flight); a
    later attempt of a paid order gets the capture, with the attempt that was paid."""
    if payment.status is PaymentStatus.CAPTURED:
        ctx.emit(_captured(payment))
    elif payment.status is PaymentStatus.FAILED:
        ctx.emit(_failed(payment))


@handlers.on(PaymentAuthorized, loads=[PAYMENTS.by("order_id"), CHARGE_REQUEST, BUDGETS])
def payment_authorized(event: PaymentAuthorized, ctx: HandlerContext) -> None:
    payment = ctx.get(PAYMENTS, event.order_id)
    if _of_another_attempt(payment, event.attempt, event.order_id):
        return
    if payment is None or not payment.answers(event.account_id, event.amount, event.attempt, event.funding_type):
        log.warning("authorisation that answers no payment of ours ignored", order_id=event.order_id)
        return
    if payment.funding_type is None:  # the first answer: the price of this funding type holds
        payment.funding_type = event.funding_type
        settle_budgets(payment, ctx)
    elif payment.funding_type is not event.funding_type:
        log.warning("authorisation from another funding type than the first ignored", order_id=event.order_id)
        return
    payment.wallet_leg, payment.source_leg = event.wallet_leg, event.source_leg
    rest = event.source_leg
    if event.funding_type is FundingType.WALLET or (rest is not None and rest.amount_minor == 0):
        if payment.capture():  # the account debited the wallet as it authorised
            ctx.emit(_captured(payment), idempotency_key=payment.attempt_key("captured"))
        return
    if event.source_token is None or ctx.read(CHARGE_REQUEST, event) is not None:
        return  # nothing to charge, or already asked (a repeated authorisation)
    charge = rest or event.amount
    request = NetworkRequest(
        charge_request_id(event.order_id, payment.attempt), event.order_id, event.source_token, charge
    )
    ctx.add(NETWORK_REQUESTS, request)
    ctx.after_commit(ports(ctx).wake_worker)


@handlers.on(
    RecordNetworkAnswer,
    loads=[PAYMENTS.by("order_id"), NETWORK_REQUESTS.by("request_id"), BUDGETS, REFUND_OF_ANSWER, REVERSAL_OF_ANSWER],
)
def record_network_answer(command: RecordNetworkAnswer, ctx: HandlerContext) -> None:
    """What the funding network answered, as the worker reports it (P4)."""
    if is_reversal_answer(command):  # a late charge being given back (handlers/reversals.py)
        record_reversal_answer(command, ctx)
        return
    if is_refund_answer(command):  # a refund's card or bank part (P6): the refund handlers decide
        record_refund_answer(command, ctx)
        return
    payment = ctx.get(PAYMENTS, command.order_id)
    request = ctx.get(NETWORK_REQUESTS, command.request_id)
    if payment is None or request is None or (request.order_id, request.amount) != (command.order_id, command.amount):
        log.warning("network answer that answers no request of ours ignored", order_id=command.order_id)
        return
    current = command.request_id == charge_request_id(payment.order_id, payment.attempt)
    if is_late_charge(command, request, payment, current=current):
        reverse_late_charge(command, request, ctx)
        return
    if not current:
        # An earlier attempt's charge (decided before that attempt failed): it never decides this one.
        log.info("network answer to an earlier attempt's charge ignored", order_id=command.order_id)
        return
    step = request.answer(command.kind, command.outcome, command.reason, ctx.now)
    if step is Step.CAPTURE and payment.capture(command.charge_id):
        ctx.emit(_captured(payment), idempotency_key=payment.attempt_key("captured"))
    elif step in (Step.FAIL_PERMANENTLY, Step.FAIL_TRANSIENTLY):
        reason = command.reason or "issuer_unavailable"
        if step is Step.FAIL_TRANSIENTLY:
            reason = reason if reason in TRANSIENT_REASONS else "issuer_unavailable"
        _fail(payment, reason, _network_detail(reason, request.attempts), ctx)
    elif step is Step.WAIT:
        ctx.after_commit(ports(ctx).wake_worker)


def _return_wallet_leg(payment: Payment, ctx: HandlerContext) -> None:
    """A split payment whose card leg failed gives the wallet leg back to the buyer (P1)."""
    if payment.wallet_leg is not None and payment.wallet_leg.amount_minor > 0:
        ctx.emit(
            CreditWallet(
                account_id=payment.buyer_id,
                order_id=payment.order_id,
                amount=payment.wallet_leg,
                reference=wallet_leg_reference(payment.order_id, payment.attempt),
            ),
            idempotency_key=payment.attempt_key("return-wallet-leg"),
        )


def _network_detail(reason: str, attempts: int) -> str:
    if reason in TRANSIENT_REASONS:
        return (
            f"the card issuer did not answer after {attempts} attempts ({reason}); try again later or pay another way"
        )
    return f"the card issuer declined the payment ({reason}); use another card or pay from the wallet"


@handlers.on(PaymentAuthorizationDeclined, loads=[PAYMENTS.by("order_id"), BUDGETS])
def payment_declined(event: PaymentAuthorizationDeclined, ctx: HandlerContext) -> None:
    payment = ctx.get(PAYMENTS, event.order_id)
    if _of_another_attempt(payment, event.attempt, event.order_id):
        return
    if payment is None or not payment.answers(event.account_id, event.amount, event.attempt):
        log.warning("declined authorisation that answers no payment of ours ignored", order_id=event.order_id)
        return
    _fail(payment, event.reason.value, event.detail, ctx)


def _of_another_attempt(payment: Payment | None, attempt: int, order_id: str) -> bool:
    """An account answer to another attempt than the payment's current one (a late answer to an
    earlier attempt): it must never capture or fail this one (S2)."""
    if payment is None or attempt == payment.attempt:
        return False
    log.info("account answer to another attempt ignored", order_id=order_id, attempt=attempt, current=payment.attempt)
    return True


def _captured(payment: Payment) -> PaymentCaptured:
    breakdown: Breakdown | None = payment.breakdown
    return PaymentCaptured(
        order_id=payment.order_id,
        buyer_id=payment.buyer_id,
        amount=payment.amount,
        breakdown=None if breakdown is None else breakdown_message(breakdown),
        wallet_leg=payment.wallet_leg,
        source_leg=payment.source_leg,
        attempt=payment.attempt,
    )


def _failed(payment: Payment) -> PaymentFailed:
    return PaymentFailed(
        order_id=payment.order_id,
        buyer_id=payment.buyer_id,
        amount=payment.amount,
        reason=payment.failure_reason or "unknown",
        detail=payment.failure_detail or "",
        permanent=payment.failure_is_permanent,
        attempt=payment.attempt,
    )
