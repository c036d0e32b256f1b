"""Accounts: wallet top-ups, debits and credits."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import Field

from contracts.envelope import AcceptJsonForm, Command, Event
from contracts.money import Balance, Money
from contracts.topics import ACCOUNT_COMMANDS, ACCOUNT_EVENTS

_ACCOUNT_ID = Field(min_length=1, max_length=100, description="Wallet owner's account id.", examples=["buyer-1"])
_ORDER_ID = Field(min_length=1, max_length=100, description="Order the movement pays for.", examples=["order-7f3a"])


class DeclineReason(StrEnum):
    """Why a wallet debit was refused; every one is permanent."""

    INSUFFICIENT_FUNDS = "insufficient_funds"
    WALLET_NOT_FOUND = "wallet_not_found"
    CURRENCY_MISMATCH = "currency_mismatch"


class FundWallet(Command):
    """Top up an account's wallet balance (opens the wallet on first top-up)."""

    topic = ACCOUNT_COMMANDS

    account_id: str = _ACCOUNT_ID
    amount: Money


class DebitWallet(Command):
    """Take an order's payment out of the buyer's wallet balance."""

    topic = ACCOUNT_COMMANDS

    account_id: str = _ACCOUNT_ID
    order_id: str = _ORDER_ID
    amount: Money


class CreditWallet(Command):
    """Pay released escrow funds into the seller's wallet (opens it if needed)."""

    topic = ACCOUNT_COMMANDS

    account_id: str = _ACCOUNT_ID
    order_id: str = _ORDER_ID
    amount: Money


class WalletFunded(Event):
    topic = ACCOUNT_EVENTS

    account_id: str = _ACCOUNT_ID
    amount: Money
    balance: Balance = Field(description="Balance after the top-up.")


class WalletDebited(Event):
    topic = ACCOUNT_EVENTS

    account_id: str = _ACCOUNT_ID
    order_id: str = _ORDER_ID
    amount: Money
    balance: Balance = Field(description="Balance after the debit.")


class WalletDebitDeclined(Event):
    topic = ACCOUNT_EVENTS

    account_id: str = _ACCOUNT_ID
    order_id: str = _ORDER_ID
    amount: Money
    reason: Annotated[DeclineReason, AcceptJsonForm()]
    detail: str = Field(description="The reason in words, for people.")


class WalletCredited(Event):
    topic = ACCOUNT_EVENTS

    account_id: str = _ACCOUNT_ID
    order_id: str = _ORDER_ID
    amount: Money
    balance: Balance = Field(description="Balance after the credit.")
