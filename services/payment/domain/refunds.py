"""Refund rules (P6): what a refund of part of an order's price gives back to the buyer, and where.

Nothing here touches Kafka, the network or a database: the handlers (handlers/refunds.py) load
the payment and the refund, call these rules, and emit what they decided.

Errors::

    CommandRefused (shared.errors)   answered to RefundPayment with its code and reason
    ├── PaymentNotCaptured       payment_not_captured: the order has no payment, or it is not captured
    ├── RefundCurrencyMismatch   currency_mismatch: the refund is not in the price's currency
    ├── RefundNotPositive        refund_amount_not_positive: a refund of nothing
    ├── RefundExceedsRemaining   refund_exceeds_remaining: more than remains refundable (named)
    ├── RefundChargeUnknown      charge_unknown: a card or bank leg without the network's charge id
    └── RefundConflict           idempotency_conflict: the refund id was used for another refund

**What the buyer gets back.** A refund is a share of the price, in the seller's currency. The
buyer gets the same share of what they paid (``Payment.paid``: converted + fee - discount, in
their own currency) at the original rate: the fee and the discount come back in proportion,
and no refund is re-priced at today's rate.

**The rounding rule.** Shares are computed *cumulatively*, so rounding never accumulates.
After refunds totalling ``R`` of a price ``P``, the buyer has got back::

    B(R) = round_half_up(paid * R / P)      in the buyer currency's minor units

and a refund that takes the total from ``R_before`` to ``R_after`` gives ``B(R_after) -
B(R_before)``. It is computed exactly in integer minor units (:func:`buyer_total`), which is
``Decimal(paid * R) / P`` quantized to a minor unit with ``ROUND_HALF_UP`` without a decimal
context's precision to run out of. The exponent (JPY 0, USD 2, KWD 3) is already in the minor
units, so one rule serves every currency. It follows that ``B(P) == paid``: any sequence of
partial refunds that sums to the price gives back exactly what was paid, never more; and
``B`` never decreases, so no refund gives back a negative amount.

**Where it goes.** Back to the sources in the reverse order of the split (P1 paid the wallet
first, then the card): each refund goes to the card or bank account first, up to what that
leg paid less what it already got back, and the rest to the wallet. A wallet payment is
refunded to the wallet, a card or bank payment to its source.

**Its life.** A refund is accepted (``pending``) and counted against the payment at once, so
a second refund sees what remains even while the first's network leg is in flight. It is
``refunded`` when every part is done (the wallet part is credited by the account service from
the same transaction's outbox; the card part when the network says so) and ``failed`` when
the network will not take the card part: that part is then owed to the buyer by an operator,
so it stays counted and no later refund can pay it twice. The saga (or an operator) tries a
failed refund again by asking for it again with a higher ``attempt`` (:meth:`Refund.retry`):
only its card or bank part goes back to the network, under the same request id, so even a
part that went through after all is given back once; the wallet part was credited already.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from contracts import FundingType, Money
from services.payment.domain.payments import Payment, PaymentStatus
from shared.errors import CommandRefused


class RefundStatus(StrEnum):
    PENDING = "pending"  # accepted and counted; the card or bank part is on its way
    REFUNDED = "refunded"
    FAILED = "failed"  # the network would not take the card or bank part: an operator's


class PaymentNotCaptured(CommandRefused):
    """Only a captured payment can be refunded."""

    def __init__(self, order_id: str, status: PaymentStatus | None) -> None:
        state = "has no payment" if status is None else f"has a {status.value} payment"
        super().__init__("payment_not_captured", f"order {order_id} {state}: only a captured payment is refunded")


class RefundCurrencyMismatch(CommandRefused):
    """A refund is a share of the price, so it is in the price's currency."""

    def __init__(self, order_id: str, price: Money, asked: Money) -> None:
        super().__init__(
            "currency_mismatch",
            f"order {order_id} was priced in {price.currency}; a refund of it must be too, not in {asked.currency}",
        )


class RefundNotPositive(CommandRefused):
    """A refund of nothing."""

    def __init__(self, order_id: str) -> None:
        super().__init__("refund_amount_not_positive", f"a refund of order {order_id} must be of more than nothing")


class RefundExceedsRemaining(CommandRefused):
    """More than remains refundable of the price; the reason names what does."""

    def __init__(self, order_id: str, asked: Money, remaining: Money) -> None:
        super().__init__(
            "refund_exceeds_remaining",
            f"a refund of {asked} exceeds what remains refundable of order {order_id}: {remaining}",
        )
        self.remaining = remaining


class RefundChargeUnknown(CommandRefused):
    """A card or bank leg to give back, but no charge of the network's to refund it on."""

    def __init__(self, order_id: str) -> None:
        super().__init__("charge_unknown", f"order {order_id} has no network charge to refund its card or bank leg on")


class RefundConflict(CommandRefused):
    """The same refund id asked for another refund."""

    def __init__(self, refund_id: str) -> None:
        super().__init__(
            "idempotency_conflict", f"refund {refund_id} was already asked with other details; use a new refund id"
        )


@dataclass(slots=True)
class Refund:
    """One refund of one order, and where giving it back stands."""

    refund_id: str
    order_id: str
    buyer_id: str
    amount: Money  # the share of the price, in the seller's currency
    buyer_amount: Money  # what the buyer gets back, in the currency they paid in
    source_part: Money  # of that, to the card or bank account (on the funding network)
    wallet_part: Money  # and to the wallet (a CreditWallet)
    source_type: FundingType | None = None  # the card's or bank account's type, when source_part is not nothing
    reason: str = ""
    status: RefundStatus = RefundStatus.PENDING
    remaining: Money | None = None  # what may still be refunded of the price, as it stood when this one ended
    failure_reason: str | None = None
    failure_detail: str | None = None
    attempt: int = 1  # the try under way (S3): a failed refund asked again with a higher one is retried

    @property
    def legs(self) -> list[tuple[FundingType, Money]]:
        """Where it goes, in the order it is given back (card or bank first); empty parts left out."""
        legs = []
        if self.source_part.amount_minor > 0 and self.source_type is not None:
            legs.append((self.source_type, self.source_part))
        if self.wallet_part.amount_minor > 0:
            legs.append((FundingType.WALLET, self.wallet_part))
        return legs

    @property
    def needs_network(self) -> bool:
        return self.source_part.amount_minor > 0

    def check_same_request(self, order_id: str, amount: Money, reason: str) -> None:
        """A repeated refund id must ask for exactly the same refund."""
        if (order_id, amount, reason) != (self.order_id, self.amount, self.reason):
            raise RefundConflict(self.refund_id)

    def complete(self, remaining: Money) -> bool:
        """Every part is done; False when the refund had already ended."""
        if self.status is not RefundStatus.PENDING:
            return False
        self.status, self.remaining = RefundStatus.REFUNDED, remaining
        return True

    def retry(self, attempt: int) -> bool:
        """Try a failed refund's card or bank part again; False unless it failed and ``attempt``
        is a later try than the one that failed (a repeat of an earlier ask changes nothing)."""
        if self.status is not RefundStatus.FAILED or attempt <= self.attempt:
            return False
        self.status, self.attempt = RefundStatus.PENDING, attempt
        self.failure_reason = self.failure_detail = None
        return True

    def fail(self, reason: str, detail: str) -> bool:
        """The network would not take the card or bank part; False when already ended."""
        if self.status is not RefundStatus.PENDING:
            return False
        self.status, self.failure_reason, self.failure_detail = RefundStatus.FAILED, reason, detail
        return True


# --- the arithmetic ---------------------------------------------------------------------------


def buyer_total(paid_minor: int, price_minor: int, refunded_minor: int) -> int:
    """``round_half_up(paid * refunded / price)`` exactly, in minor units (see the module's rule).

    For non-negative integers, ``floor((2n + d) / 2d)`` is ``n/d`` rounded half up."""
    if price_minor <= 0 or not 0 <= refunded_minor <= price_minor or paid_minor < 0:
        raise ValueError("a share needs 0 <= refunded <= price, a positive price and a paid amount")
    return (2 * paid_minor * refunded_minor + price_minor) // (2 * price_minor)


def split_back(amount_minor: int, source_left_minor: int) -> tuple[int, int]:
    """(to the source, to the wallet): the card or bank leg first, up to what it has left."""
    to_source = min(amount_minor, source_left_minor)
    return to_source, amount_minor - to_source


# --- a payment's refund totals ----------------------------------------------------------------


def _so_far(total: Money | None, currency: str) -> Money:
    return total if total is not None else Money(amount_minor=0, currency=currency)


def refundable(payment: Payment) -> Money:
    """What may still be refunded of the price, in the seller's currency."""
    return payment.amount - _so_far(payment.refunded, payment.amount.currency)


def paid_legs(payment: Payment) -> tuple[Money, Money]:
    """(card or bank leg, wallet leg) of what the buyer paid, in their currency; they sum to
    ``paid``. The source leg is what the authorisation said it paid (a split, or a card alone);
    without one, a wallet payment paid everything from the wallet and a card one from the card."""
    paid = payment.paid
    if payment.source_leg is not None:
        source = min(payment.source_leg.amount_minor, paid.amount_minor)  # never more than was paid in all
    elif payment.funding_type in {FundingType.CARD, FundingType.BANK_ACCOUNT}:
        source = paid.amount_minor
    else:
        source = 0
    wallet = paid.amount_minor - source
    return Money(amount_minor=source, currency=paid.currency), Money(amount_minor=wallet, currency=paid.currency)


def check_refundable(payment: Payment | None, order_id: str, amount: Money) -> Payment:
    """The payment, when it may give ``amount`` (of its price) back; else the refusal."""
    if payment is None or payment.status is not PaymentStatus.CAPTURED:
        raise PaymentNotCaptured(order_id, None if payment is None else payment.status)
    if amount.currency != payment.amount.currency:
        raise RefundCurrencyMismatch(order_id, payment.amount, amount)
    if amount.amount_minor <= 0:
        raise RefundNotPositive(order_id)
    remaining = refundable(payment)
    if amount.amount_minor > remaining.amount_minor:
        raise RefundExceedsRemaining(order_id, amount, remaining)
    return payment


def accept_refund(payment: Payment | None, order_id: str, refund_id: str, amount: Money, reason: str = "") -> Refund:
    """A new refund of ``amount`` of the order's price, counted against the payment at once.

    Raises the refusals above; on success the payment's totals (``refunded``,
    ``refunded_to_buyer``, ``source_refunded``, ``wallet_refunded``) include it."""
    payment = check_refundable(payment, order_id, amount)
    paid, buyer_currency = payment.paid, payment.paid.currency
    refunded_after = _so_far(payment.refunded, amount.currency) + amount
    to_buyer_after = buyer_total(paid.amount_minor, payment.amount.amount_minor, refunded_after.amount_minor)
    buyer_amount = to_buyer_after - _so_far(payment.refunded_to_buyer, buyer_currency).amount_minor
    source_leg, wallet_leg = paid_legs(payment)
    source_left = source_leg - _so_far(payment.source_refunded, buyer_currency)
    to_source, to_wallet = split_back(buyer_amount, source_left.amount_minor)
    # The legs sum to what was paid and B(R) never exceeds it: the wallet leg always has room.
    assert to_wallet <= (wallet_leg - _so_far(payment.wallet_refunded, buyer_currency)).amount_minor
    if to_source > 0 and payment.charge_id is None:
        raise RefundChargeUnknown(order_id)
    refund = Refund(
        refund_id=refund_id,
        order_id=order_id,
        buyer_id=payment.buyer_id,
        amount=amount,
        buyer_amount=Money(amount_minor=buyer_amount, currency=buyer_currency),
        source_part=Money(amount_minor=to_source, currency=buyer_currency),
        wallet_part=Money(amount_minor=to_wallet, currency=buyer_currency),
        source_type=payment.funding_type if to_source > 0 else None,
        reason=reason,
    )
    _count(payment, refund)
    return refund


def _count(payment: Payment, refund: Refund) -> None:
    """Add an accepted refund to the payment's totals (what later refunds are measured against)."""
    buyer = refund.buyer_amount.currency
    payment.refunded = _so_far(payment.refunded, refund.amount.currency) + refund.amount
    payment.refunded_to_buyer = _so_far(payment.refunded_to_buyer, buyer) + refund.buyer_amount
    payment.source_refunded = _so_far(payment.source_refunded, buyer) + refund.source_part
    payment.wallet_refunded = _so_far(payment.wallet_refunded, buyer) + refund.wallet_part
