"""Payments: quotes, captures and refunds requested by the saga or the marketplace, their outcome
with the price breakdown, and the payment service's record of what the funding network answered
(P1, P3, P4, P6)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, Field

from contracts.envelope import STRICT, AcceptJsonForm, Command, Event, WireDatetime
from contracts.funding_sources import FundingType
from contracts.money import Money
from contracts.registration import SecurityMethod
from contracts.sealing import Sealed
from contracts.topics import PAYMENT_COMMANDS, PAYMENT_EVENTS


class NetworkOutcome(StrEnum):
    """What one request to the funding network came to (P4)."""

    CHARGED = "charged"
    DECLINED = "declined"  # permanent: the issuer said no
    UNAVAILABLE = "unavailable"  # transient: nothing was applied; a retry may succeed
    UNKNOWN = "unknown"  # the request left and no answer came: ask its status before anything else
    NOT_FOUND = "not_found"  # the status inquiry says it was never applied: safe to retry
    REFUNDED = "refunded"


class NetworkRequestKind(StrEnum):
    CHARGE = "charge"
    STATUS = "status"
    REFUND = "refund"
    REFUND_STATUS = "refund_status"


_ORDER_ID = Field(min_length=1, max_length=100, description="Order being paid.", examples=["order-7f3a"])
_BUYER_ID = Field(min_length=1, max_length=100, description="Paying account.", examples=["buyer-1"])
_QUOTE_ID = Field(min_length=1, max_length=100, description="The marketplace's id for the quote.", examples=["q-1"])
_REFUND_ID = Field(
    min_length=1, max_length=100, description="The refund's own id: one refund per id, ever.", examples=["r-1"]
)
_DECIMAL = r"^[0-9]+(\.[0-9]+)?$"


class QuotedRate(BaseModel):
    """The exchange rate a price was given at (P3): units of ``to_currency`` per ``from_currency``."""

    model_config = STRICT

    from_currency: str = Field(min_length=3, max_length=3, examples=["USD"])
    to_currency: str = Field(min_length=3, max_length=3, examples=["JPY"])
    mid_rate: str = Field(pattern=_DECIMAL, max_length=40, description="A decimal string.", examples=["157.2"])
    applied_rate: str = Field(
        pattern=_DECIMAL,
        max_length=40,
        description="The mid rate with the platform's spread, against the buyer.",
        examples=["159.558"],
    )
    taken_at: WireDatetime = Field(description="When the rate table was taken.")
    expires_at: WireDatetime = Field(description="The price holds until then (exclusive).")


class PriceBreakdown(BaseModel):
    """Everything one payment costs and pays (P3): ``total == converted + fee - discount``.

    ``amount`` and ``settlement`` are in the seller's currency; ``converted``, ``fee``,
    ``discount`` and ``total`` in the buyer's. Domestic payments have no rate and no fee.
    """

    model_config = STRICT

    funding_type: Annotated[FundingType, AcceptJsonForm()]
    amount: Money = Field(description="The price, in the seller's currency.")
    converted: Money = Field(description="The price in the buyer's currency at the applied rate.")
    rate: QuotedRate | None = None
    fee: Money = Field(description="The cross-border fee for this funding type.")
    discount: Money = Field(description="What a promotion took off.")
    total: Money = Field(description="What the buyer pays.")
    settlement: Money = Field(description="What the seller is paid, in the seller's currency.")
    promotion_id: str | None = Field(default=None, max_length=64)


class RequestQuote(Command):
    """The marketplace's cashier asks what a buyer would pay for an order, per funding type (P3)."""

    topic = PAYMENT_COMMANDS

    order_id: str = _ORDER_ID
    quote_id: str = _QUOTE_ID
    buyer_id: str = _BUYER_ID
    amount: Money = Field(description="The price, in the seller's currency.")


class PriceQuoted(Event):
    """A price the buyer may pay until ``expires_at``: checkout with its ``quote_id`` to keep it."""

    topic = PAYMENT_EVENTS

    order_id: str = _ORDER_ID
    quote_id: str = _QUOTE_ID
    buyer_id: str = _BUYER_ID
    amount: Money
    expires_at: WireDatetime
    breakdowns: list[PriceBreakdown] = Field(description="One per funding type the buyer may pay with.")


class CapturePayment(Command):
    """Collect an order's amount from the buyer: the account authorises it, then the source pays."""

    topic = PAYMENT_COMMANDS

    order_id: str = _ORDER_ID
    buyer_id: str = _BUYER_ID
    amount: Money
    marketplace_id: str = Field(min_length=1, max_length=100, description="The marketplace charging.")
    source_id: str | None = Field(default=None, max_length=64, description="A card or bank account; none: wallet.")
    security_method: Annotated[SecurityMethod, AcceptJsonForm()] | None = None
    use_balance_first: bool = Field(
        default=False, description="With a source: pay from the wallet balance first, the rest from the source (P1)."
    )
    security_proof: Sealed | None = Field(default=None, description="Passed to the account service unopened.")
    quote_id: str | None = Field(default=None, max_length=100, description="Pay at this quote's price (P3).")
    attempt: int = Field(
        default=1,
        ge=1,
        le=100,
        description="Which attempt at paying the order this is (S2): each is a new payment try.",
    )


class PaymentCaptured(Event):
    topic = PAYMENT_EVENTS

    order_id: str = _ORDER_ID
    buyer_id: str = _BUYER_ID
    amount: Money = Field(description="The order's price, in the seller's currency.")
    breakdown: PriceBreakdown | None = Field(default=None, description="What the buyer paid and the seller gets.")
    wallet_leg: Money | None = Field(default=None, description="What the wallet paid (P1).")
    source_leg: Money | None = Field(default=None, description="What the card or bank account paid (P1).")
    attempt: int = Field(default=1, ge=1, le=100, description="The attempt this answers.")


class PaymentFailed(Event):
    topic = PAYMENT_EVENTS

    order_id: str = _ORDER_ID
    buyer_id: str = _BUYER_ID
    amount: Money
    reason: str = Field(description="Machine-readable reason code.", examples=["insufficient_funds"])
    detail: str = Field(description="The reason in words, and what the buyer can do.")
    permanent: bool = Field(description="False when a retry may succeed.")
    attempt: int = Field(default=1, ge=1, le=100, description="The attempt this answers.")


class RecordNetworkAnswer(Command):
    """The payment service's network worker hands what the funding network answered back to the
    payment's own handlers, so every change of a payment goes through one place (P4)."""

    topic = PAYMENT_COMMANDS

    order_id: str = _ORDER_ID
    request_id: str = Field(min_length=1, max_length=200, description="The network request's idempotency key.")
    kind: Annotated[NetworkRequestKind, AcceptJsonForm()]
    outcome: Annotated[NetworkOutcome, AcceptJsonForm()]
    amount: Money
    charge_id: str | None = Field(default=None, max_length=100)
    reason: str | None = Field(default=None, max_length=100, description="Why declined, unavailable or unknown.")


class ReleaseSpending(Command):
    """A payment that failed gives back what it counted against the buyer's limits (P2)."""

    topic = PAYMENT_COMMANDS

    order_id: str = _ORDER_ID
    account_id: str = _BUYER_ID
    amount: Money
    day: str = Field(
        pattern=r"^\d{4}-\d{2}-\d{2}$",
        description="Start of the day window it was counted in.",
        examples=["2026-12-01"],
    )
    month: str = Field(
        pattern=r"^\d{4}-\d{2}-01$", description="Start of the month window it was counted in.", examples=["2026-12-01"]
    )


class RefundPayment(Command):
    """Give (part of) a captured payment back to the buyer (P6): ``amount`` is in the seller's
    currency, of the order's price; the buyer gets the same share of what they paid, at the
    original rate, back to the sources in reverse order of the split (card first, then wallet).

    A refund that failed (``RefundFailed``) is tried again by sending it again with the same
    refund id and a higher ``attempt``: only its unpaid card or bank part goes to the network
    again, under the same network request id, so nothing is ever given back twice (S3)."""

    topic = PAYMENT_COMMANDS

    order_id: str = _ORDER_ID
    refund_id: str = _REFUND_ID
    amount: Money
    reason: str = Field(default="", max_length=200, description="Why, for people.")
    attempt: int = Field(
        default=1, ge=1, le=1000, description="Which try at paying this refund back this is (S3): a retry is higher."
    )


class RefundLeg(BaseModel):
    """What one source got back of a refund."""

    model_config = STRICT

    funding_type: Annotated[FundingType, AcceptJsonForm()]
    amount: Money


class PaymentRefunded(Event):
    topic = PAYMENT_EVENTS

    order_id: str = _ORDER_ID
    buyer_id: str = _BUYER_ID
    refund_id: str = _REFUND_ID
    amount: Money = Field(description="The share of the price refunded, in the seller's currency.")
    refunded: Money = Field(description="What the buyer got back, in the currency they paid in.")
    legs: list[RefundLeg] = Field(description="Where it went, in the order it was given back.")
    remaining: Money = Field(description="What may still be refunded of the price, in the seller's currency.")


class RefundFailed(Event):
    """A refund the funding network would not take; it needs an operator (the money is still ours)."""

    topic = PAYMENT_EVENTS

    order_id: str = _ORDER_ID
    buyer_id: str = _BUYER_ID
    refund_id: str = _REFUND_ID
    amount: Money
    reason: str = Field(description="Machine-readable reason code.", examples=["issuer_unavailable"])
    detail: str
    attempt: int = Field(default=1, ge=1, le=1000, description="The try at paying the refund back that failed.")
