"""Orders: the marketplace's commands to the saga and the order lifecycle events."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field

from contracts.envelope import AcceptJsonForm, Command, Event, WireDatetime
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
    PAYMENT_RETRYING = "payment_retrying"  # a transient failure: the payment is tried again after a backoff (S2)
    PAYMENT_FAILED = "payment_failed"  # declined: the buyer may pay again another way while the window is open
    DISPUTED = "disputed"  # the buyer opened a dispute: the funds are frozen until it is resolved (E3)
    COMPENSATING = "compensating"  # a step failed after money moved: it is being given back (S3)


class Deadline(StrEnum):
    """The order's durable timers (S4); each fires once, as an OrderDeadlineReached."""

    PAYMENT_WINDOW = "payment_window"  # unpaid orders close
    PAYMENT_RETRY = "payment_retry"  # the next attempt after a transient failure
    RELEASE_REMINDER = "release_reminder"  # tell the buyer the auto-release is near
    AUTO_RELEASE = "auto_release"  # the protection window ended with no dispute: pay the seller
    SELLER_RESPONSE = "seller_response"  # the seller did not answer a dispute in time: the buyer wins
    COMPENSATION_RETRY = "compensation_retry"  # try a failed compensation again


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
    shipping_method: str | None = Field(
        default=None,
        max_length=40,
        description="How the goods travel; sets the buyer's protection window (E2). None: the standard window.",
        examples=["standard", "express"],
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


class PayAgain(Command):
    """The buyer pays a declined order again, another way, while its payment window is open (S2)."""

    topic = ORDER_COMMANDS

    order_id: OrderId = _ORDER_ID
    buyer_id: AccountId = _BUYER_ID
    source_id: str | None = Field(default=None, max_length=64, description="A card or bank account; none: wallet.")
    security_method: Annotated[SecurityMethod, AcceptJsonForm()] | None = None
    use_balance_first: bool = False
    security_proof: Sealed | None = Field(default=None, description="PIN or TOTP code sealed for payment:<order_id>.")


class ExtendProtection(Command):
    """The buyer asks, once per order, for more time before the funds are released to the seller (S4)."""

    topic = ORDER_COMMANDS

    order_id: OrderId = _ORDER_ID
    buyer_id: AccountId = _BUYER_ID


class OrderDeadlineReached(Command):
    """One of the order's timers is due (S4): sent by the saga's deadline sweeper to the saga itself.

    It names only which order to look at: the saga fires every timer of that order that is due
    by its own clock, once, and ignores a repeat.
    """

    topic = ORDER_COMMANDS

    order_id: OrderId = _ORDER_ID
    due_at: WireDatetime = Field(description="When the earliest due timer of the order fell due.")


OperatorAction = Literal["retry_now", "cancel", "compensate_now"]


class OperatorOrderAction(Command):
    """An operator acts on a stuck order (S6): retry its waiting step now, cancel it (refunding
    what was paid), or run its compensation now. Idempotent by ``action_id``; audited."""

    topic = ORDER_COMMANDS

    order_id: OrderId = _ORDER_ID
    action_id: str = Field(min_length=1, max_length=100, description="The action's own id: a repeat is ignored.")
    action: OperatorAction
    operator_id: str = Field(min_length=1, max_length=100, description="Who acts.", examples=["ops-alice"])
    reason: str = Field(min_length=1, max_length=500, description="Why, for the audit trail.")


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
    next_deadline: Annotated[Deadline, AcceptJsonForm()] | None = Field(
        default=None, description="What the order waits for next, if it is a timer (S4)."
    )
    next_deadline_at: WireDatetime | None = Field(default=None, description="When that timer fires.")


class AutoReleaseApproaching(Event):
    """The buyer's protection ends soon: the funds go to the seller unless the buyer disputes or extends."""

    topic = ORDER_EVENTS

    order_id: OrderId = _ORDER_ID
    buyer_id: AccountId = _BUYER_ID
    seller_id: AccountId = _SELLER_ID
    amount: Money
    release_at: WireDatetime


class ProtectionExtended(Event):
    topic = ORDER_EVENTS

    order_id: OrderId = _ORDER_ID
    buyer_id: AccountId = _BUYER_ID
    seller_id: AccountId = _SELLER_ID
    release_at: WireDatetime = Field(description="The new end of the buyer's protection.")


class OperatorActionTaken(Event):
    """An operator's action on an order, as carried out (S6 audit)."""

    topic = ORDER_EVENTS

    order_id: OrderId = _ORDER_ID
    action_id: str = Field(min_length=1, max_length=100)
    action: OperatorAction
    operator_id: str = Field(min_length=1, max_length=100)
    reason: str = Field(min_length=1, max_length=500)
    outcome: str = Field(description="What the action did, in words.")
