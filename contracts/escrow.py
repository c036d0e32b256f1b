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


class ReleaseFunds(Command):
    """Release an order's escrow hold to the seller."""

    topic = ESCROW_COMMANDS

    order_id: str = _ORDER_ID


class ReturnFunds(Command):
    """Take part of an order's hold back out of escrow, for a refund to the buyer (P6)."""

    topic = ESCROW_COMMANDS

    order_id: str = _ORDER_ID
    refund_id: str = Field(min_length=1, max_length=100, description="The refund it is for.")
    amount: Money


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
