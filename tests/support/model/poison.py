"""Foreign records: well-formed, signed by the service allowed to send them, and answering no
command their receiver sent, or not matching it (another causation, amount, party, attempt or
request). Each must be refused without effect (SPEC X9: an event is applied only as the answer
to a command its consumer sent and matching it): the receiver's rows do not change and it sends
nothing.

(Undecodable bytes, unknown types, bad signatures are the consumer mechanism's, dead-lettered
before any handler runs: tests/unit/test_decode_record.py, test_signing.py, the chaos run.)
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from contracts import (
    CommandRejected,
    DeclineReason,
    FundingType,
    FundsFrozen,
    FundsHeld,
    FundsReleased,
    FundsReturned,
    Message,
    Money,
    NetworkOutcome,
    NetworkRequestKind,
    PaymentAuthorizationDeclined,
    PaymentAuthorized,
    PaymentCaptured,
    PaymentFailed,
    PaymentRefunded,
    RecordNetworkAnswer,
    RefundFailed,
)
from contracts.topics import ESCROW_EVENTS
from services.payment.domain.network import NetworkRequest
from services.payment.store import PAYMENTS
from services.saga.domain import Order
from services.saga.store import REFUNDS
from tests.support.model.system import Plan, System
from tests.support.model.wire import Letter, envelope


@dataclass(frozen=True, slots=True)
class Foreign:
    """One foreign record and what is wrong with it."""

    what: str
    message: Message
    source: str  # the principal allowed to send its type
    to: str
    causation_id: uuid.UUID | None = None


def _more(money: Money, by: int = 1) -> Money:
    return Money(amount_minor=money.amount_minor + by, currency=money.currency)


def _sent(order: Order, slot: str) -> uuid.UUID | None:
    """The message id the saga sent for ``slot``: a wrong amount under the right cause."""
    sent = order.sent.get(slot)
    return None if sent is None else uuid.UUID(sent)


def _escrow(what: str, message: Message, cause: uuid.UUID | None) -> Foreign:
    return Foreign(what, message, "escrow", "saga", cause)


def _payment(what: str, message: Message) -> Foreign:
    return Foreign(what, message, "payment", "saga")


def _account(what: str, message: Message, cause: uuid.UUID) -> Foreign:
    return Foreign(what, message, "account", "payment", cause)


def foreign_records(system: System, plan: Plan, stranger: uuid.UUID) -> list[Foreign]:
    """Every kind of foreign record that fits ``plan``'s order as it stands now; ``stranger`` is
    a message id no service sent."""
    order = system.order(plan.order_id)
    found = _to_the_payment(system, plan, stranger)
    if order is None:
        return found
    o, price, held, buyer, seller = order.order_id, order.amount, order.still_held, order.buyer_id, order.seller_id
    hold, release = _sent(order, "HoldFunds"), _sent(order, "ReleaseFunds")
    found += [
        _escrow(
            "FundsHeld caused by no HoldFunds of the saga's",
            FundsHeld(order_id=o, buyer_id=buyer, seller_id=seller, amount=price),
            stranger,
        ),
        _escrow(
            "FundsHeld of another amount",
            FundsHeld(order_id=o, buyer_id=buyer, seller_id=seller, amount=_more(price)),
            hold,
        ),
        _escrow(
            "FundsHeld for another buyer",
            FundsHeld(order_id=o, buyer_id="b9-other", seller_id=seller, amount=price),
            hold,
        ),
        _escrow(
            "FundsReleased caused by no ReleaseFunds of the saga's",
            FundsReleased(order_id=o, seller_id=seller, amount=held),
            stranger,
        ),
        _escrow(
            "FundsReleased of another amount",
            FundsReleased(order_id=o, seller_id=seller, amount=_more(held)),
            release,
        ),
        _escrow(
            "FundsReleased to another seller", FundsReleased(order_id=o, seller_id="s9-other", amount=held), release
        ),
        _escrow(
            "FundsFrozen caused by no FreezeFunds of the saga's",
            FundsFrozen(order_id=o, dispute_id=f"d-{o}", held=held),
            stranger,
        ),
        _escrow(
            "a refusal of a HoldFunds the saga did not send",
            CommandRejected(
                subject_id=o, rejected_message_id=stranger, rejected_type="HoldFunds", code="invalid_party", reason="?"
            ),
            stranger,
        ),
        _payment(
            "PaymentCaptured for another buyer",
            PaymentCaptured(order_id=o, buyer_id="b9-other", amount=price, attempt=order.attempt),
        ),
        _payment(
            "PaymentCaptured of another amount",
            PaymentCaptured(order_id=o, buyer_id=buyer, amount=_more(price), attempt=order.attempt),
        ),
        _payment(
            "PaymentFailed of another amount",
            PaymentFailed(
                order_id=o,
                buyer_id=buyer,
                amount=_more(price),
                reason="issuer_unavailable",
                detail="?",
                permanent=False,
                attempt=order.attempt,
            ),
        ),
    ]
    if order.refunding is not None:
        found += _about_the_refund(system, order, stranger)
    return found


def _about_the_refund(system: System, order: Order, stranger: uuid.UUID) -> list[Foreign]:
    refund = system.saga.store.load(REFUNDS, (order.order_id, order.refunding))
    assert refund is not None
    o, r, amount, buyer, held = order.order_id, refund.refund_id, refund.amount, order.buyer_id, order.still_held
    more = _more(amount)
    return [
        _escrow(
            "FundsReturned caused by no ReturnFunds of the saga's",
            FundsReturned(order_id=o, buyer_id=buyer, refund_id=r, amount=amount, still_held=held),
            stranger,
        ),
        _escrow(
            "FundsReturned of another amount",
            FundsReturned(order_id=o, buyer_id=buyer, refund_id=r, amount=more, still_held=held),
            _sent(order, f"ReturnFunds:{r}"),
        ),
        _payment(
            "PaymentRefunded of another amount",
            PaymentRefunded(
                order_id=o, buyer_id=buyer, refund_id=r, amount=more, refunded=more, legs=[], remaining=order.amount
            ),
        ),
        _payment(
            "PaymentRefunded to another buyer",
            PaymentRefunded(
                order_id=o,
                buyer_id="b9-other",
                refund_id=r,
                amount=amount,
                refunded=amount,
                legs=[],
                remaining=order.amount,
            ),
        ),
        _payment(
            "RefundFailed of another amount",
            RefundFailed(order_id=o, buyer_id=buyer, refund_id=r, amount=more, reason="issuer_unavailable", detail="?"),
        ),
    ]


def _to_the_payment(system: System, plan: Plan, stranger: uuid.UUID) -> list[Foreign]:
    payment = system.payment.store.load(PAYMENTS, plan.order_id)
    o, price, buyer = plan.order_id, plan.amount, plan.buyer_id
    attempt = 1 if payment is None else payment.attempt
    wallet = FundingType.WALLET
    found = [
        Foreign(
            "a network answer to no request of the payment's",
            RecordNetworkAnswer(
                order_id=o,
                request_id=f"charge:{o}:99",
                kind=NetworkRequestKind.CHARGE,
                outcome=NetworkOutcome.CHARGED,
                amount=price,
                charge_id="ch-forged",
            ),
            "payment",
            "payment",
        ),
        _account(
            "PaymentAuthorized of another amount",
            PaymentAuthorized(
                account_id=buyer,
                order_id=o,
                amount=_more(price),
                funding_type=wallet,
                wallet_leg=_more(price),
                attempt=attempt,
            ),
            stranger,
        ),
        _account(
            "PaymentAuthorized of another attempt",
            PaymentAuthorized(
                account_id=buyer, order_id=o, amount=price, funding_type=wallet, wallet_leg=price, attempt=attempt + 1
            ),
            stranger,
        ),
        _account(
            "PaymentAuthorized for another account",
            PaymentAuthorized(
                account_id="b9-other", order_id=o, amount=price, funding_type=wallet, wallet_leg=price, attempt=attempt
            ),
            stranger,
        ),
        _account(
            "PaymentAuthorizationDeclined of another amount",
            PaymentAuthorizationDeclined(
                account_id=buyer,
                order_id=o,
                amount=_more(price),
                reason=DeclineReason.INSUFFICIENT_FUNDS,
                detail="?",
                attempt=attempt,
            ),
            stranger,
        ),
    ]
    found += [
        _network_answer_of_another_amount(request) for request in system.network_requests() if request.order_id == o
    ]
    return found


def _network_answer_of_another_amount(request: NetworkRequest) -> Foreign:
    charge = request.kind in (NetworkRequestKind.CHARGE, NetworkRequestKind.STATUS)
    answer = RecordNetworkAnswer(
        order_id=request.order_id,
        request_id=request.request_id,
        kind=request.kind,
        outcome=NetworkOutcome.CHARGED if charge else NetworkOutcome.REFUNDED,
        amount=_more(request.amount),
        charge_id="ch-forged",
    )
    return Foreign(f"a network answer of another amount to {request.request_id}", answer, "payment", "payment")


def inject(system: System, foreign: Foreign, message_id: uuid.UUID) -> str:
    """Deliver ``foreign`` at once and check it changed nothing and sent nothing."""
    made = envelope(
        foreign.message,
        source=foreign.source,
        now=system.clock.now(),
        idempotency_key=f"foreign:{message_id}",
        causation_id=foreign.causation_id,
        message_id=message_id,
    )
    consumer = system.consumers[foreign.to]
    before = consumer.store.fingerprint()
    topic = ESCROW_EVENTS.name if isinstance(foreign.message, CommandRejected) else foreign.message.topic.name
    handled = system.receive(Letter(made, foreign.to, topic))
    assert handled.refused is None, f"{foreign.what}: refused ({handled.refused}) instead of ignored"
    assert not handled.emitted, f"{foreign.what}: answered with {[type(r).__name__ for r in handled.emitted]}"
    assert consumer.store.fingerprint() == before, f"{foreign.what}: changed {foreign.to}'s rows"
    system.counts.poison_refused += 1
    return f"foreign {type(foreign.message).__name__}({foreign.message.partition_key}) -> {foreign.to}: {foreign.what}"
