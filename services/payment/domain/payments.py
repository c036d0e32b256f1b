"""Payment rules: a payment is captured or failed exactly once."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from contracts import DeclineReason, Money
from shared.errors import CommandRefused

# P4: a permanent failure ends the order; a transient one may succeed when retried. Every
# account decline is permanent; funding-network faults (timeouts, an issuer away) will not be.
PERMANENT_REASONS = frozenset(reason.value for reason in DeclineReason)
UNAVAILABLE_FUNDING = "funding_type_unavailable"
"""Card and bank payments until the funding network port exists (payment issue, P1)."""


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

    @property
    def failure_is_permanent(self) -> bool:
        return self.failure_reason in PERMANENT_REASONS

    def check_same_request(self, buyer_id: str, amount: Money) -> None:
        """A repeated capture must ask for exactly the same thing."""
        if (buyer_id, amount) != (self.buyer_id, self.amount):
            raise PaymentConflict(self.order_id)

    def answers(self, account_id: str, amount: Money) -> bool:
        """Whether an account event is the answer to the authorisation this payment asked for."""
        return (account_id, amount) == (self.buyer_id, self.amount)

    def capture(self) -> bool:
        """Mark captured; False when the payment had already reached an outcome."""
        if self.status is not PaymentStatus.PENDING:
            return False
        self.status = PaymentStatus.CAPTURED
        return True

    def fail(self, reason: str, detail: str) -> bool:
        """Mark failed; False when the payment had already reached an outcome."""
        if self.status is not PaymentStatus.PENDING:
            return False
        self.status = PaymentStatus.FAILED
        self.failure_reason, self.failure_detail = reason, detail
        return True
