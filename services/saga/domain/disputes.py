"""E3: an order's dispute as the saga keeps it: who said what, by when, and how it ended.

One dispute per order (a second one is refused): the buyer opens it while the order is in
escrow and before the protection ends; the seller answers before ``answer_by`` (no answer in
time counts for the buyer); an operator resolves it. The money side (freeze, refund, release)
is the order's (orders.py); this record is the case file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from contracts import DisputeReason, DisputeResolution, Money
from services.saga.domain.refunds import OrderRuleBroken


class DisputeStatus(StrEnum):
    OPEN = "open"  # waiting for the seller's answer
    ANSWERED = "answered"  # waiting for an operator
    RESOLVED = "resolved"


@dataclass(slots=True)
class Dispute:
    order_id: str
    dispute_id: str
    buyer_id: str
    reason: DisputeReason
    opened_at: datetime
    answer_by: datetime
    description: str = ""
    evidence: list[str] = field(default_factory=list)
    status: DisputeStatus = DisputeStatus.OPEN
    statement: str | None = None
    seller_evidence: list[str] = field(default_factory=list)
    resolution: DisputeResolution | None = None
    refund: Money | None = None  # what the resolution gave back to the buyer
    decided_by: str | None = None
    decision_reason: str | None = None
    frozen: bool = False  # escrow confirmed the freeze (FundsFrozen)

    def check_same(self, dispute_id: str) -> None:
        """A second OpenDispute: the same dispute repeated changes nothing; another is refused."""
        if dispute_id != self.dispute_id:
            raise OrderRuleBroken(
                "already_disputed",
                f"order {self.order_id} already has dispute {self.dispute_id} ({self.status.value}); "
                "an order is disputed once",
            )

    def check_is(self, dispute_id: str) -> None:
        if dispute_id != self.dispute_id:
            raise OrderRuleBroken(
                "dispute_not_found", f"order {self.order_id} has dispute {self.dispute_id}, not {dispute_id}"
            )

    def answer(self, statement: str, evidence: list[str], now: datetime) -> None:
        if self.status is not DisputeStatus.OPEN:
            raise OrderRuleBroken(
                "dispute_not_open", f"dispute {self.dispute_id} is {self.status.value}: it takes no answer now"
            )
        if now >= self.answer_by:
            raise OrderRuleBroken(
                "answer_window_closed",
                f"dispute {self.dispute_id} had to be answered by {self.answer_by.isoformat()}",
            )
        self.status, self.statement, self.seller_evidence = DisputeStatus.ANSWERED, statement, list(evidence)

    def resolve(self, resolution: DisputeResolution, refund: Money, decided_by: str, reason: str) -> None:
        if self.status is DisputeStatus.RESOLVED:
            raise OrderRuleBroken(
                "dispute_resolved", f"dispute {self.dispute_id} was resolved already ({self.resolution})"
            )
        self.status, self.resolution, self.refund = DisputeStatus.RESOLVED, resolution, refund
        self.decided_by, self.decision_reason = decided_by, reason
