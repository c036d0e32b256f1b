"""Orders: the marketplace's commands to the saga and the order lifecycle events."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import Field

from contracts.envelope import AcceptJsonForm, Command, Event
from contracts.money import Money
from contracts.registration import SecurityMethod
from contracts.sealing import Sealed
from contracts.topics import ORDER_COMMANDS, ORDER_EVENTS

OrderId = str
AccountId = str


class OrderStatus(StrEnum):
    """Where an order is in its lifecycle (S1)."""

    CREATED = "created"
    PAYMENT_PENDING = "payment_pending"
    PAID = "paid"
    IN_ESCROW = "in_escrow"
    RELEASING = "releasing"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    REFUNDED = "refunded"  # every unit of the price went back to the buyer (P6)


_ORDER_ID = Field(min_length=1, max_length=100, description="Marketplace order id.", examples=["order-7f3a"])
_BUYER_ID = Field(min_length=1, max_length=100, description="Buyer's account id.", examples=["buyer-1"])
_SELLER_ID = Field(min_length=1, max_length=100, description="Seller's account id.", examples=["seller-9"])


class Checkout(Command):
    """The marketplace asks to collect payment for an order and hold it in escrow."""

    topic = ORDER_COMMANDS

    order_id: OrderId = _ORDER_ID
    buyer_id: AccountId = _BUYER_ID
    seller_id: AccountId = _SELLER_ID
    amount: Money = Field(description="What the buyer pays.")
    item: str = Field(default="", max_length=200, description="What was bought, for people to read.")
    marketplace_id: str = Field(
        min_length=1, max_length=100, description="The marketplace charging: the buyer must have granted it pay."
    )
    source_id: str | None = Field(default=None, max_length=64, description="Pay from this card or bank account.")
    security_method: Annotated[SecurityMethod, AcceptJsonForm()] | None = None
    use_balance_first: bool = Field(
        default=False, description="With a source: pay from the wallet balance first, the rest from the source (P1)."
    )
    security_proof: Sealed | None = Field(default=None, description="PIN or TOTP code sealed for payment:<order_id>.")
    quote_id: str | None = Field(
        default=None, max_length=100, description="Pay at this quote's price (RequestQuote, P3), while it holds."
    )


class ConfirmReceipt(Command):
    """The buyer confirms the goods arrived: release the escrow to the seller."""

    topic = ORDER_COMMANDS

    order_id: OrderId = _ORDER_ID
    buyer_id: AccountId = _BUYER_ID


class RequestRefund(Command):
    """The marketplace gives (part of) an order's price back to the buyer while it is in escrow (P6)."""

    topic = ORDER_COMMANDS

    order_id: OrderId = _ORDER_ID
    refund_id: str = Field(
        min_length=1, max_length=100, description="The refund's own id: a repeat with it is the same refund."
    )
    amount: Money = Field(description="In the order's currency; at most what has not been refunded yet.")
    reason: str = Field(default="", max_length=200, description="Why, for people.")


class OrderStatusChanged(Event):
    """The saga moved an order to a new status."""

    topic = ORDER_EVENTS

    order_id: OrderId = _ORDER_ID
    buyer_id: AccountId = _BUYER_ID
    seller_id: AccountId = _SELLER_ID
    amount: Money
    status: Annotated[OrderStatus, AcceptJsonForm()]
    reason: str | None = Field(default=None, description="Why, when the order failed or was cancelled.")
    refunded: Money | None = Field(default=None, description="What has been refunded of the price so far.")
