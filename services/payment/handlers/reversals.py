"""Late charges (P4): money the funding network took for no payment of ours is given back.

A charge is decided by the first answer that settles it. Two answers can reach one charge
request: the same attempt sent twice (a network worker restarted before its first send's
answer was recorded sends it again), the first finding the issuer away and failing the
payment, the second charging; or an answer to an earlier attempt's charge after the payment
moved on to another (S2). Either way the network holds the buyer's money for a charge no
payment captured, and keeping it is money taken; ignoring it is money lost.

Such a late charge becomes a *reversal*: a refund of that charge on the network, the whole
of it, under the request id ``reversal:<charge request id>``, so repeats of the late answer
reverse it once and the network applies it once. It is sent, retried and asked about like any
refund (domain/network.py); if the network never takes it, the log says so with the charge
id, for an operator.
"""

from __future__ import annotations

from contracts import NetworkOutcome, NetworkRequestKind, RecordNetworkAnswer
from services.payment.domain.network import NetworkRequest, RequestState, Step
from services.payment.domain.payments import Payment, PaymentStatus
from services.payment.handlers.refunds import refund_on_network
from services.payment.ports import ports
from services.payment.store import NETWORK_REQUESTS
from shared.consumer import HandlerContext
from shared.logging import get_logger

log = get_logger(__name__)

_PREFIX = "reversal:"


def reversal_request_id(charge_request_id: str) -> str:
    return f"{_PREFIX}{charge_request_id}"


def is_reversal_answer(command: RecordNetworkAnswer) -> bool:
    return command.request_id.startswith(_PREFIX)


REVERSAL_OF_ANSWER = NETWORK_REQUESTS.by(lambda command, _: reversal_request_id(command.request_id))
"""For ``record_network_answer``'s loads: the reversal a charge's late answer may already have."""


def is_late_charge(command: RecordNetworkAnswer, charge: NetworkRequest, payment: Payment, *, current: bool) -> bool:
    """A charged answer that no payment captured: to an earlier attempt's charge, or to the
    current one's after it was decided otherwise (a repeat of the answer that captured it is not)."""
    if command.outcome is not NetworkOutcome.CHARGED or command.kind not in _CHARGE_KINDS:
        return False
    if not current:
        return True
    captured_by_it = payment.status is PaymentStatus.CAPTURED and payment.charge_id == command.charge_id
    return charge.state is RequestState.DONE and not captured_by_it


def reverse_late_charge(command: RecordNetworkAnswer, charge: NetworkRequest, ctx: HandlerContext) -> None:
    """Give a late charge back on the network, once."""
    charge.state = RequestState.DONE  # an earlier attempt's inquiry, if still asking, has its answer
    request_id = reversal_request_id(charge.request_id)
    if ctx.get(NETWORK_REQUESTS, request_id) is not None:
        return  # the late answer repeated: reversed already
    if command.charge_id is None:
        log.error("late charge without a charge id: an operator must give it back", order_id=command.order_id)
        return
    log.warning(
        "late charge: giving it back",
        order_id=command.order_id,
        request_id=charge.request_id,
        charge_id=command.charge_id,
    )
    refund_on_network(request_id, charge.order_id, charge.amount, command.charge_id, ctx)


def record_reversal_answer(command: RecordNetworkAnswer, ctx: HandlerContext) -> None:
    """What the network answered about a reversal (reached through ``record_network_answer``)."""
    reversal = ctx.get(NETWORK_REQUESTS, command.request_id)
    if reversal is None or (reversal.order_id, reversal.amount) != (command.order_id, command.amount):
        log.warning("network answer that answers no reversal of ours ignored", order_id=command.order_id)
        return
    step = reversal.answer(command.kind, command.outcome, command.reason, ctx.now)
    if step is Step.REFUNDED:
        log.info("late charge given back", order_id=command.order_id, charge_id=reversal.charge_id)
    elif step in (Step.FAIL_PERMANENTLY, Step.FAIL_TRANSIENTLY):
        log.error(
            "late charge could not be given back: an operator must refund it",
            order_id=command.order_id,
            charge_id=reversal.charge_id,
            reason=command.reason,
        )
    elif step is Step.WAIT:
        ctx.after_commit(ports(ctx).wake_worker)


_CHARGE_KINDS = frozenset({NetworkRequestKind.CHARGE, NetworkRequestKind.STATUS})
