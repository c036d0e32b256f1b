"""Accounts: wallet top-ups and credits, and the account's say on every payment."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import Field

from contracts.envelope import AcceptJsonForm, Command, Event
from contracts.funding_sources import FundingSource, FundingType
from contracts.money import Balance, Money
from contracts.registration import SecurityMethod
from contracts.sealing import Sealed
from contracts.topics import ACCOUNT_COMMANDS, ACCOUNT_EVENTS

_ACCOUNT_ID = Field(min_length=1, max_length=100, description="Wallet owner's account id.", examples=["buyer-1"])
_ORDER_ID = Field(min_length=1, max_length=100, description="Order the movement pays for.", examples=["order-7f3a"])


class DeclineReason(StrEnum):
    """Why the account service refused to let a payment go ahead; every one is permanent."""

    INSUFFICIENT_FUNDS = "insufficient_funds"
    WALLET_NOT_FOUND = "wallet_not_found"
    CURRENCY_MISMATCH = "currency_mismatch"
    ACCOUNT_NOT_FOUND = "account_not_found"
    ACCOUNT_NOT_ACTIVE = "account_not_active"
    ACCOUNT_LOCKED = "account_locked"
    BINDING_MISSING = "binding_missing"
    BINDING_EXPIRED = "binding_expired"
    SOURCE_NOT_FOUND = "source_not_found"
    SOURCE_REMOVED = "source_removed"
    SOURCE_EXPIRED = "source_expired"
    FUNDING_TYPE_NOT_ALLOWED = "funding_type_not_allowed"
    SECURITY_CHECK_REQUIRED = "security_check_required"
    SECURITY_CHECK_FAILED = "security_check_failed"


class FundWallet(Command):
    """Top up an account's wallet balance (opens the wallet on first top-up), from a funding source if named."""

    topic = ACCOUNT_COMMANDS

    account_id: str = _ACCOUNT_ID
    amount: Money
    source_id: str | None = Field(default=None, max_length=64, description="The card or bank account paying it.")


class AuthorizePayment(Command):
    """The payment service asks whether the buyer's account may pay an order, and from which source.

    The account service decides against its own state: the account is active, the marketplace
    holds a live ``pay`` grant, the source is live and allowed in the region, the security check
    passed when the amount needs one; paying from the wallet, it debits the balance too.
    """

    topic = ACCOUNT_COMMANDS

    account_id: str = _ACCOUNT_ID
    order_id: str = _ORDER_ID
    marketplace_id: str = Field(min_length=1, max_length=100, description="Who charges: must hold a grant.")
    amount: Money = Field(description="What the buyer pays from the wallet, in their currency.")
    card_amount: Money | None = Field(
        default=None, description="What they pay from a card, when it differs (cross-border fees differ, P3)."
    )
    bank_account_amount: Money | None = Field(
        default=None, description="What they pay from a bank account, when it differs."
    )
    source_id: str | None = Field(default=None, max_length=64, description="A card or bank account; none: the wallet.")
    security_method: Annotated[SecurityMethod, AcceptJsonForm()] | None = None
    use_balance_first: bool = Field(
        default=False, description="With a source: pay from the wallet balance first, the rest from the source (P1)."
    )
    security_proof: Sealed | None = Field(default=None, description="PIN or TOTP code sealed for payment:<order_id>.")
    attempt: int = Field(
        default=1, ge=1, le=100, description="The order's payment attempt (S2): each may debit the wallet once."
    )


class CreditWallet(Command):
    """Pay money into a wallet (opens it if needed): released escrow funds to the seller, a
    refund or a failed split's wallet leg back to the buyer."""

    topic = ACCOUNT_COMMANDS

    account_id: str = _ACCOUNT_ID
    order_id: str = _ORDER_ID
    amount: Money
    reference: str | None = Field(
        default=None,
        max_length=120,
        description="One credit per account and reference (default: the order id), e.g. refund:<refund_id>.",
    )


class WalletFunded(Event):
    topic = ACCOUNT_EVENTS

    account_id: str = _ACCOUNT_ID
    amount: Money
    balance: Balance = Field(description="Balance after the top-up.")


class PaymentAuthorized(Event):
    """The account lets the payment go ahead; from the wallet, the amount is already debited."""

    topic = ACCOUNT_EVENTS

    account_id: str = _ACCOUNT_ID
    order_id: str = _ORDER_ID
    amount: Money
    funding_type: Annotated[FundingType, AcceptJsonForm()]
    source: FundingSource | None = Field(default=None, description="The card or bank account; none for the wallet.")
    source_token: str | None = Field(default=None, description="The vault token the network charges (card or bank).")
    balance: Balance | None = Field(default=None, description="The wallet's balance after the debit.")
    wallet_leg: Money | None = Field(default=None, description="What the wallet paid (debited already).")
    source_leg: Money | None = Field(default=None, description="What the card or bank account is to pay.")
    attempt: int = Field(default=1, ge=1, le=100, description="The attempt this answers.")


class PaymentAuthorizationDeclined(Event):
    topic = ACCOUNT_EVENTS

    account_id: str = _ACCOUNT_ID
    order_id: str = _ORDER_ID
    amount: Money
    reason: Annotated[DeclineReason, AcceptJsonForm()]
    detail: str = Field(description="The reason in words, for people.")
    attempt: int = Field(default=1, ge=1, le=100, description="The attempt this answers.")


class WalletCredited(Event):
    topic = ACCOUNT_EVENTS

    account_id: str = _ACCOUNT_ID
    order_id: str = _ORDER_ID
    amount: Money
    balance: Balance = Field(description="Balance after the credit.")
