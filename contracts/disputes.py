"""Disputes (E3): the buyer contests an order in escrow, the seller answers, an operator decides.

The commands go to the saga, which owns the dispute's deadlines; it freezes the escrow hold
(FreezeFunds) for as long as the dispute is open, and carries the resolution out through
escrow and the payment service. Every step is an event on the order's topic saying who did
it and why.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import Field

from contracts.envelope import AcceptJsonForm, Command, Event, WireDatetime
from contracts.money import Money
from contracts.topics import ORDER_COMMANDS, ORDER_EVENTS

_ORDER_ID = Field(min_length=1, max_length=100, description="The disputed order.", examples=["order-7f3a"])
_DISPUTE_ID = Field(
    min_length=1, max_length=100, description="The dispute's own id: a repeat with it is the same dispute."
)
_BUYER_ID = Field(min_length=1, max_length=100, description="Buyer's account id.", examples=["buyer-1"])
_SELLER_ID = Field(min_length=1, max_length=100, description="Seller's account id.", examples=["seller-9"])
_EVIDENCE: list[str] = Field(
    default_factory=list,
    max_length=20,
    description="References to evidence kept elsewhere (photo or document ids, tracking numbers).",
)
EvidenceRef = Annotated[str, Field(min_length=1, max_length=200)]


class DisputeReason(StrEnum):
    NOT_RECEIVED = "not_received"
    DAMAGED = "damaged"
    NOT_AS_DESCRIBED = "not_as_described"


class DisputeResolution(StrEnum):
    """How an operator (or the seller's silence) ends a dispute."""

    REFUND_IN_FULL = "refund_in_full"  # everything escrow holds goes back to the buyer
    SPLIT = "split"  # the buyer gets ``refund`` back, the seller the rest
    RELEASE = "release"  # the seller is paid what escrow holds


class OpenDispute(Command):
    """The buyer contests an order in escrow, before its protection ends."""

    topic = ORDER_COMMANDS

    order_id: str = _ORDER_ID
    dispute_id: str = _DISPUTE_ID
    buyer_id: str = _BUYER_ID
    reason: Annotated[DisputeReason, AcceptJsonForm()]
    description: str = Field(default="", max_length=2000, description="What happened, in the buyer's words.")
    evidence: list[EvidenceRef] = _EVIDENCE


class AnswerDispute(Command):
    """The seller answers a dispute before its response deadline."""

    topic = ORDER_COMMANDS

    order_id: str = _ORDER_ID
    dispute_id: str = _DISPUTE_ID
    seller_id: str = _SELLER_ID
    statement: str = Field(min_length=1, max_length=2000, description="The seller's side.")
    evidence: list[EvidenceRef] = _EVIDENCE


class ResolveDispute(Command):
    """An operator decides a dispute: a full refund, a split stated in minor units, or a release."""

    topic = ORDER_COMMANDS

    order_id: str = _ORDER_ID
    dispute_id: str = _DISPUTE_ID
    operator_id: str = Field(min_length=1, max_length=100, description="Who decides.", examples=["ops-alice"])
    resolution: Annotated[DisputeResolution, AcceptJsonForm()]
    refund: Money | None = Field(
        default=None,
        description="For a split: what goes back to the buyer (more than nothing, less than what escrow holds); "
        "the seller is released the rest.",
    )
    reason: str = Field(min_length=1, max_length=500, description="Why, for both parties and the audit trail.")


class DisputeOpened(Event):
    topic = ORDER_EVENTS

    order_id: str = _ORDER_ID
    dispute_id: str = _DISPUTE_ID
    buyer_id: str = _BUYER_ID
    seller_id: str = _SELLER_ID
    amount: Money = Field(description="What escrow holds and is now frozen.")
    reason: Annotated[DisputeReason, AcceptJsonForm()]
    description: str = ""
    evidence: list[EvidenceRef] = _EVIDENCE
    answer_by: WireDatetime = Field(description="The seller's deadline to answer; no answer counts for the buyer.")


class DisputeAnswered(Event):
    topic = ORDER_EVENTS

    order_id: str = _ORDER_ID
    dispute_id: str = _DISPUTE_ID
    buyer_id: str = _BUYER_ID
    seller_id: str = _SELLER_ID
    statement: str
    evidence: list[EvidenceRef] = _EVIDENCE


class DisputeResolved(Event):
    """How the dispute ended and who decided: ``refund`` goes back to the buyer, ``release`` to the seller."""

    topic = ORDER_EVENTS

    order_id: str = _ORDER_ID
    dispute_id: str = _DISPUTE_ID
    buyer_id: str = _BUYER_ID
    seller_id: str = _SELLER_ID
    resolution: Annotated[DisputeResolution, AcceptJsonForm()]
    refund: Money
    release: Money
    decided_by: str = Field(description="'operator:<id>', or 'deadline' when the seller did not answer in time.")
    reason: str
