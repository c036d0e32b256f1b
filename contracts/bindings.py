"""Accounts A5: the buyer lets a marketplace account charge the wallet, for some scopes, until a time."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import Field

from contracts.envelope import AcceptJsonForm, Command, Event, WireDatetime
from contracts.registration import ACCOUNT_ID, COUNTRY
from contracts.sealing import Sealed
from contracts.topics import ACCOUNT_COMMANDS, ACCOUNT_EVENTS

MARKETPLACE_ID = Field(min_length=1, max_length=100, description="The marketplace's account.", examples=["shop-eu"])


class BindingScope(StrEnum):
    PAY = "pay"
    REFUND = "refund"


class GrantMarketplaceAccess(Command):
    """The buyer binds the wallet to a marketplace profile; name and country must match the wallet's."""

    topic = ACCOUNT_COMMANDS

    account_id: str = ACCOUNT_ID
    marketplace_id: str = MARKETPLACE_ID
    scopes: list[Annotated[BindingScope, AcceptJsonForm()]] = Field(min_length=1, max_length=4)
    expires_at: WireDatetime
    profile_legal_name: str = Field(min_length=1, max_length=200, description="The name on the marketplace profile.")
    profile_country: str = COUNTRY
    password: Sealed = Field(description="The buyer's consent: sealed for purpose password:<account_id>.")


class RevokeMarketplaceAccess(Command):
    topic = ACCOUNT_COMMANDS

    account_id: str = ACCOUNT_ID
    marketplace_id: str = MARKETPLACE_ID
    password: Sealed = Field(description="Sealed for purpose password:<account_id>.")


class MarketplaceAccessGranted(Event):
    topic = ACCOUNT_EVENTS

    account_id: str = ACCOUNT_ID
    marketplace_id: str = MARKETPLACE_ID
    scopes: list[Annotated[BindingScope, AcceptJsonForm()]]
    expires_at: WireDatetime


class MarketplaceAccessRevoked(Event):
    topic = ACCOUNT_EVENTS

    account_id: str = ACCOUNT_ID
    marketplace_id: str = MARKETPLACE_ID
