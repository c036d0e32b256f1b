"""Accounts A2: real-name verification, and the limits each level brings (A3).

``Limits`` lives in contracts.registration (an account has limits from its registration on).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import Field

from contracts.envelope import AcceptJsonForm, Command, Event, WireDate
from contracts.registration import ACCOUNT_ID, COUNTRY, OPERATOR_ID, Limits
from contracts.sealing import Sealed
from contracts.topics import ACCOUNT_COMMANDS, ACCOUNT_EVENTS


class VerificationLevel(StrEnum):
    """L0 unverified, L1 verified (name and document), L2 enhanced (address proof as well)."""

    L0 = "L0"
    L1 = "L1"
    L2 = "L2"


class DocumentType(StrEnum):
    PASSPORT = "passport"
    NATIONAL_ID = "national_id"
    DRIVING_LICENCE = "driving_licence"


class IdentityRejectionReason(StrEnum):
    """The fixed list an operator (or the automatic rules) choose from."""

    DOCUMENT_NUMBER_INVALID = "document_number_invalid"
    DOCUMENT_UNREADABLE = "document_unreadable"
    UNDERAGE = "underage"
    NAME_MISMATCH = "name_mismatch"
    COUNTRY_MISMATCH = "country_mismatch"
    ADDRESS_MISSING = "address_missing"
    LEVEL_ORDER = "level_order"
    SUSPECTED_FRAUD = "suspected_fraud"


class SubmitIdentity(Command):
    """The holder submits an identity for a level: L1 needs a document, L2 an address too."""

    topic = ACCOUNT_COMMANDS

    account_id: str = ACCOUNT_ID
    level: Annotated[VerificationLevel, AcceptJsonForm()]
    legal_name: str = Field(min_length=1, max_length=200)
    document_type: Annotated[DocumentType, AcceptJsonForm()]
    document_number: Sealed = Field(description="Sealed for purpose document:<account_id>.")
    birth_date: WireDate
    country: str = COUNTRY
    address: str | None = Field(default=None, max_length=500, description="Proof-of-address line (L2).")


class ApproveIdentity(Command):
    """An operator approves the pending submission for a level."""

    topic = ACCOUNT_COMMANDS

    account_id: str = ACCOUNT_ID
    level: Annotated[VerificationLevel, AcceptJsonForm()]
    operator_id: str = OPERATOR_ID


class RejectIdentity(Command):
    """An operator rejects the pending submission for a level, with reasons from the fixed list."""

    topic = ACCOUNT_COMMANDS

    account_id: str = ACCOUNT_ID
    level: Annotated[VerificationLevel, AcceptJsonForm()]
    operator_id: str = OPERATOR_ID
    reasons: list[Annotated[IdentityRejectionReason, AcceptJsonForm()]] = Field(min_length=1, max_length=8)


class IdentitySubmitted(Event):
    topic = ACCOUNT_EVENTS

    account_id: str = ACCOUNT_ID
    level: Annotated[VerificationLevel, AcceptJsonForm()]
    document_type: Annotated[DocumentType, AcceptJsonForm()]
    document_masked: str = Field(description="The document number with all but its last two characters hidden.")
    review: str = Field(examples=["automatic", "operator"])


class IdentityVerified(Event):
    """The account reached a level; ``limits`` are what it may pay now."""

    topic = ACCOUNT_EVENTS

    account_id: str = ACCOUNT_ID
    level: Annotated[VerificationLevel, AcceptJsonForm()]
    legal_name: str
    country: str = COUNTRY
    limits: Limits
    reviewed_by: str = Field(description="An operator id, or 'automatic'.")


class IdentityRejected(Event):
    topic = ACCOUNT_EVENTS

    account_id: str = ACCOUNT_ID
    level: Annotated[VerificationLevel, AcceptJsonForm()]
    reasons: list[Annotated[IdentityRejectionReason, AcceptJsonForm()]]
    detail: str
    reviewed_by: str
