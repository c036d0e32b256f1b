"""Accounts A4: cards and bank accounts a wallet may be funded or a payment paid from.

A card number never crosses Kafka: the client hands it to the funding network's vault
(services/funding, ``POST /v1/tokens/cards``), which answers a token, the brand and the last
four digits. Commands carry only those.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, Field

from contracts.envelope import STRICT, AcceptJsonForm, Command, Event
from contracts.registration import ACCOUNT_ID, COUNTRY
from contracts.topics import ACCOUNT_COMMANDS, ACCOUNT_EVENTS


class FundingType(StrEnum):
    WALLET = "wallet"
    CARD = "card"
    BANK_ACCOUNT = "bank_account"


class CardBrand(StrEnum):
    VISA = "visa"
    MASTERCARD = "mastercard"
    AMEX = "amex"
    DISCOVER = "discover"
    JCB = "jcb"
    UNIONPAY = "unionpay"


SOURCE_ID = Field(
    min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$", description="The holder's name for the source."
)
TOKEN = Field(
    min_length=8,
    max_length=64,
    pattern=r"^tok_[A-Za-z0-9]+$",
    description="The vault's token for the card or account (never its number).",
    examples=["tok_4f9c2a7d1e"],
)
LAST4 = Field(min_length=4, max_length=4, pattern=r"^[0-9]{4}$", examples=["4242"])


class FundingSource(BaseModel):
    """A source as everyone may see it: no number, only brand and last four."""

    model_config = STRICT

    source_id: str = SOURCE_ID
    type: Annotated[FundingType, AcceptJsonForm()]
    brand: Annotated[CardBrand, AcceptJsonForm()] | None = None
    last4: str = LAST4
    expiry_month: int | None = Field(default=None, ge=1, le=12)
    expiry_year: int | None = Field(default=None, ge=2000, le=2100)


class AddCard(Command):
    topic = ACCOUNT_COMMANDS

    account_id: str = ACCOUNT_ID
    source_id: str = SOURCE_ID
    token: str = TOKEN
    brand: Annotated[CardBrand, AcceptJsonForm()]
    last4: str = LAST4
    expiry_month: int = Field(ge=1, le=12)
    expiry_year: int = Field(ge=2000, le=2100)


class AddBankAccount(Command):
    topic = ACCOUNT_COMMANDS

    account_id: str = ACCOUNT_ID
    source_id: str = SOURCE_ID
    token: str = TOKEN
    last4: str = LAST4
    country: str = COUNTRY


class SetDefaultFundingSource(Command):
    topic = ACCOUNT_COMMANDS

    account_id: str = ACCOUNT_ID
    source_id: str = SOURCE_ID


class RemoveFundingSource(Command):
    topic = ACCOUNT_COMMANDS

    account_id: str = ACCOUNT_ID
    source_id: str = SOURCE_ID


class FundingSourceAdded(Event):
    topic = ACCOUNT_EVENTS

    account_id: str = ACCOUNT_ID
    source: FundingSource
    is_default: bool


class DefaultFundingSourceChanged(Event):
    topic = ACCOUNT_EVENTS

    account_id: str = ACCOUNT_ID
    source_id: str = SOURCE_ID


class FundingSourceRemoved(Event):
    topic = ACCOUNT_EVENTS

    account_id: str = ACCOUNT_ID
    source_id: str = SOURCE_ID
