"""Payments: captures requested by the saga, their outcome, and the payment service's record of
what the funding network answered (P1, P4)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import Field

from contracts.envelope import AcceptJsonForm, Command, Event
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


class NetworkRequestKind(StrEnum):
    CHARGE = "charge"
    STATUS = "status"


_ORDER_ID = Field(min_length=1, max_length=100, description="Order being paid.", examples=["order-7f3a"])
_BUYER_ID = Field(min_length=1, max_length=100, description="Paying account.", examples=["buyer-1"])


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


class PaymentCaptured(Event):
    topic = PAYMENT_EVENTS

    order_id: str = _ORDER_ID
    buyer_id: str = _BUYER_ID
    amount: Money


class PaymentFailed(Event):
    topic = PAYMENT_EVENTS

    order_id: str = _ORDER_ID
    buyer_id: str = _BUYER_ID
    amount: Money
    reason: str = Field(description="Machine-readable reason code.", examples=["insufficient_funds"])
    detail: str = Field(description="The reason in words, and what the buyer can do.")
    permanent: bool = Field(description="False when a retry may succeed.")


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
