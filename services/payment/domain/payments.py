"""Payment rules: each attempt at paying an order is captured or failed exactly once, and an
order is paid at most once (S2: a failed attempt may be followed by another)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from contracts import DeclineReason, FundingType, Money
from services.payment.domain.pricing import Breakdown
from shared.errors import CommandRefused

# P4: a permanent failure ends the order; a transient one may succeed when retried. Every
# account decline is permanent; funding-network faults (timeouts, an issuer away) will not be.
PERMANENT_REASONS = frozenset(reason.value for reason in DeclineReason)
NETWORK_DECLINES = frozenset(
    {"do_not_honor", "stolen_card", "card_expired", "unknown_token", "network_request_refused"}
)
PRICING_REFUSALS = frozenset(
    {"quote_expired", "quote_mismatch", "quote_not_found", "currency_not_quoted", "amount_too_large"}
)
PERMANENT_REASONS |= NETWORK_DECLINES | PRICING_REFUSALS | {"limit_exceeded"}
TRANSIENT_REASONS = frozenset(
    {"issuer_unavailable", "network_timeout", "network_unreachable", "rate_limited", "connection_lost"}
)


FIRST_ATTEMPT = 1


def per_attempt(name: str, order_id: str, attempt: int) -> str:
    """The id of one attempt's network request or message (``charge``, ``authorize``, ``captured``,
    ...): attempt 1 keeps the form ids had before there were attempts (``charge:order-7``), so
    stored requests and sent messages stay valid; a later one adds its number (``charge:order-7:2``),
    so the network charges it afresh and no consumer takes it for a repeat of the first."""
    return f"{name}:{order_id}" if attempt == FIRST_ATTEMPT else f"{name}:{order_id}:{attempt}"


def wallet_leg_reference(order_id: str, attempt: int) -> str | None:
    """The reference a failed split's wallet leg is credited back under (the account credits once
    per reference): attempt 1's under the order's own (``CreditWallet``'s default, as before
    attempts), a later one's under ``<order>:<attempt>``, the reference the account debited it
    under, so each attempt's leg comes back once and none is taken for another's."""
    return None if attempt == FIRST_ATTEMPT else f"{order_id}:{attempt}"


class PaymentStatus(StrEnum):
    PENDING = "pending"
    CAPTURED = "captured"
    FAILED = "failed"


class AttemptAsked(StrEnum):
    """What the attempt a capture names is to the order's payment (S2)."""

    REPEAT = "repeat"  # the current attempt again: its outcome again (nothing while it is pending)
    STALE = "stale"  # older than the current one: a late or duplicated command, ignored
    NEW = "new"  # the current one failed: this one is priced, counted and authorised afresh
    PAID = "paid"  # the order is paid already: the capture again, never a second charge


class PaymentConflict(CommandRefused):
    """The same order was asked to be paid with different content."""

    def __init__(self, order_id: str) -> None:
        super().__init__("idempotency_conflict", f"order {order_id} already has a payment with other details")


class PaymentInProgress(CommandRefused):
    """A new attempt asked while the current one has no outcome yet: two attempts in flight
    could both charge the buyer."""

    def __init__(self, order_id: str, current: int, asked: int) -> None:
        super().__init__(
            "payment_in_progress",
            f"order {order_id}: attempt {current} is still in progress; attempt {asked} may follow only once it failed",
        )


@dataclass(slots=True)
class Payment:
    order_id: str
    buyer_id: str
    amount: Money
    status: PaymentStatus = PaymentStatus.PENDING
    attempt: int = FIRST_ATTEMPT  # S2: which try at paying the order the fields below describe
    failure_reason: str | None = None
    failure_detail: str | None = None
    funding_type: FundingType | None = None  # known once the account authorised it
    charge_id: str | None = None  # the funding network's, for a card or bank payment
    limit_reserved: Money | None = None  # counted against the buyer's limits (P2), in their currency
    limit_day: str | None = None  # the windows it was counted in, to give it back if it fails
    limit_month: str | None = None
    wallet_leg: Money | None = None  # P1 split: what the wallet paid
    source_leg: Money | None = None  # and what the card or bank account is to pay
    quote_id: str | None = None  # the quote the buyer paid at (P3), if they asked for one
    pricing: dict[str, Any] | None = None  # P3: the quote and a breakdown per funding type (pricing.py forms)
    budget_reserved: dict[str, Any] | None = None  # promotion id -> USD minor units booked against its budget
    refunded: Money | None = None  # P6: of the price (seller's currency), so far
    refunded_to_buyer: Money | None = None  # what the buyer got back so far, in their currency
    source_refunded: Money | None = None  # of that, to the card or bank account
    wallet_refunded: Money | None = None  # and to the wallet

    @property
    def breakdown(self) -> Breakdown | None:
        """The price the buyer paid (P3): the breakdown for the funding type the account chose;
        None until authorised."""
        if self.funding_type is None:
            return None
        if self.pricing is None:  # a domestic price (or one recorded before pricing): the amount itself
            return Breakdown.domestic(self.amount, self.funding_type)
        chosen = self.pricing["breakdowns"].get(self.funding_type.value)
        return None if chosen is None else Breakdown.from_dict(chosen)

    @property
    def paid(self) -> Money:
        """What the buyer paid, in their own currency (the wallet and source legs sum to it)."""
        breakdown = self.breakdown
        return self.amount if breakdown is None else breakdown.total

    @property
    def failure_is_permanent(self) -> bool:
        return self.failure_reason in PERMANENT_REASONS

    def check_same_request(self, buyer_id: str, amount: Money) -> None:
        """A repeated capture must ask for exactly the same thing."""
        if (buyer_id, amount) != (self.buyer_id, self.amount):
            raise PaymentConflict(self.order_id)

    def total_for(self, funding_type: FundingType) -> Money:
        """What the buyer pays from a source of this type (the fee differs by type, P3)."""
        if self.pricing is None:
            return self.amount
        return Money.model_validate(self.pricing["breakdowns"][FundingType(funding_type).value]["total"])

    def answers(
        self, account_id: str, amount: Money, attempt: int, funding_type: FundingType = FundingType.WALLET
    ) -> bool:
        """Whether an account event is the answer to the authorisation this payment's current
        attempt asked for (a decline echoes the wallet's amount; an authorisation, that of the
        type it pays from). An answer to an earlier attempt is not: it must never decide this one."""
        return (account_id, amount, attempt) == (self.buyer_id, self.total_for(funding_type), self.attempt)

    def attempt_asked(self, attempt: int) -> AttemptAsked:
        """What a capture naming ``attempt`` is to this payment; PaymentInProgress for a later
        attempt while the current one is pending."""
        if attempt == self.attempt:
            return AttemptAsked.REPEAT
        if attempt < self.attempt:
            return AttemptAsked.STALE
        if self.status is PaymentStatus.CAPTURED:
            return AttemptAsked.PAID
        if self.status is PaymentStatus.PENDING:
            raise PaymentInProgress(self.order_id, self.attempt, attempt)
        return AttemptAsked.NEW

    def start_attempt(self, attempt: int, quote_id: str | None) -> None:
        """Try again after a failure: everything the failed attempt decided is forgotten (it gave
        back its share of the limits and of any promotion budget, and its wallet leg, as it failed)."""
        if self.status is not PaymentStatus.FAILED or attempt <= self.attempt:
            raise ValueError(f"attempt {attempt} cannot follow attempt {self.attempt} ({self.status.value})")
        assert self.budget_reserved is None, "a failed attempt gives back what it booked"
        self.attempt, self.status, self.quote_id = attempt, PaymentStatus.PENDING, quote_id
        self.failure_reason = self.failure_detail = None
        self.funding_type, self.charge_id, self.pricing = None, None, None
        self.limit_reserved, self.limit_day, self.limit_month = None, None, None
        self.wallet_leg = self.source_leg = None

    def attempt_key(self, name: str) -> str:
        """The id of this attempt's network request or message called ``name`` (see per_attempt)."""
        return per_attempt(name, self.order_id, self.attempt)

    def capture(self, charge_id: str | None = None) -> bool:
        """Mark captured (with the network's charge id, for a card or bank payment); False when
        the payment had already reached an outcome."""
        if self.status is not PaymentStatus.PENDING:
            return False
        self.status, self.charge_id = PaymentStatus.CAPTURED, charge_id
        return True

    def fail(self, reason: str, detail: str) -> bool:
        """Mark failed; False when the payment had already reached an outcome."""
        if self.status is not PaymentStatus.PENDING:
            return False
        self.status = PaymentStatus.FAILED
        self.failure_reason, self.failure_detail = reason, detail
        return True
