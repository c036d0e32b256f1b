"""Escrow: holding captured funds per order and releasing them to the seller."""

from __future__ import annotations

from pydantic import Field

from contracts.envelope import Command, Event
from contracts.money import Money
from contracts.payments import PriceBreakdown
from contracts.topics import ESCROW_COMMANDS, ESCROW_EVENTS

_ORDER_ID = Field(min_length=1, max_length=100, description="Order whose funds are held.", examples=["order-7f3a"])
_BUYER_ID = Field(min_length=1, max_length=100, description="Buyer's account id.", examples=["buyer-1"])
_SELLER_ID = Field(min_length=1, max_length=100, description="Seller's account id.", examples=["seller-9"])


class HoldFunds(Command):
    """Hold an order's captured payment in escrow until the buyer confirms receipt."""

    topic = ESCROW_COMMANDS

    order_id: str = _ORDER_ID
    buyer_id: str = _BUYER_ID
    seller_id: str = _SELLER_ID
    amount: Money = Field(description="The order's price, in the seller's currency: what is held for the seller.")
    breakdown: PriceBreakdown | None = Field(
        default=None,
        description=(
            "The payment's breakdown (E4): paid in another currency, the buyer's total is booked in it, "
            "the fee to fee revenue, and the settlement held in the seller's currency."
        ),
    )


_DISPUTE_ID = Field(
    default=None, min_length=1, max_length=100, description="The dispute whose resolution this carries out (E3)."
)


class ReleaseFunds(Command):
    """Release an order's escrow hold to the seller. A frozen hold is released only by the
    resolution of the dispute that froze it (``dispute_id``), which also ends the freeze."""

    topic = ESCROW_COMMANDS

    order_id: str = _ORDER_ID
    dispute_id: str | None = _DISPUTE_ID


class FreezeFunds(Command):
    """Freeze an order's hold while a dispute is open (E3): no release until it is resolved."""

    topic = ESCROW_COMMANDS

    order_id: str = _ORDER_ID
    dispute_id: str = Field(min_length=1, max_length=100, description="The dispute that freezes the hold.")


class ReturnFunds(Command):
    """Take part of an order's hold back out of escrow, for a refund to the buyer (P6)."""

    topic = ESCROW_COMMANDS

    order_id: str = _ORDER_ID
    refund_id: str = Field(min_length=1, max_length=100, description="The refund it is for.")
    amount: Money
    dispute_id: str | None = _DISPUTE_ID


class FundsHeld(Event):
    topic = ESCROW_EVENTS

    order_id: str = _ORDER_ID
    buyer_id: str = _BUYER_ID
    seller_id: str = _SELLER_ID
    amount: Money


class FundsReleased(Event):
    topic = ESCROW_EVENTS

    order_id: str = _ORDER_ID
    seller_id: str = _SELLER_ID
    amount: Money = Field(description="What the seller is paid.")


class FundsReturned(Event):
    topic = ESCROW_EVENTS

    order_id: str = _ORDER_ID
    buyer_id: str = _BUYER_ID
    refund_id: str = Field(min_length=1, max_length=100)
    amount: Money = Field(description="What left the hold for the buyer.")
    still_held: Money = Field(description="What the hold keeps for the seller.")


class FundsFrozen(Event):
    """The hold is frozen for a dispute: nothing is released until the dispute is resolved."""

    topic = ESCROW_EVENTS

    order_id: str = _ORDER_ID
    dispute_id: str = Field(min_length=1, max_length=100)
    held: Money = Field(description="What the frozen hold keeps.")
