"""Payment rules: a payment is captured or failed exactly once."""

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


class PaymentStatus(StrEnum):
    PENDING = "pending"
    CAPTURED = "captured"
    FAILED = "failed"


class PaymentConflict(CommandRefused):
    """The same order was asked to be paid with different content."""

    def __init__(self, order_id: str) -> None:
        super().__init__("idempotency_conflict", f"order {order_id} already has a payment with other details")


@dataclass(slots=True)
class Payment:
    order_id: str
    buyer_id: str
    amount: Money
    status: PaymentStatus = PaymentStatus.PENDING
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

    def answers(self, account_id: str, amount: Money, funding_type: FundingType = FundingType.WALLET) -> bool:
        """Whether an account event is the answer to the authorisation this payment asked for
        (a decline echoes the wallet's amount; an authorisation, that of the type it pays from)."""
        return (account_id, amount) == (self.buyer_id, self.total_for(funding_type))

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
