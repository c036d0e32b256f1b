"""Payments: captures requested by the saga and their outcome."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from contracts.envelope import AcceptJsonForm, Command, Event
from contracts.money import Money
from contracts.registration import SecurityMethod
from contracts.sealing import Sealed
from contracts.topics import PAYMENT_COMMANDS, PAYMENT_EVENTS

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
