"""Accounts A1 and A6: registration with a one-time code, the account's status, sign-in and
the security settings (TOTP, payment PIN) that guard a payment.

Every secret here is :data:`~contracts.sealing.Sealed`; events carry none, and a phone number
only masked (``+44 **** ***123``).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, Field

from contracts.envelope import STRICT, AcceptJsonForm, Command, Event, WireDatetime
from contracts.money import Money
from contracts.sealing import Sealed
from contracts.topics import ACCOUNT_COMMANDS, ACCOUNT_EVENTS

ACCOUNT_ID = Field(
    min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._:-]+$", description="Account id.", examples=["buyer-1"]
)
OPERATOR_ID = Field(
    min_length=1, max_length=100, description="The operator who decided, for the audit trail.", examples=["op-ana"]
)
EMAIL = Field(
    default=None,
    max_length=254,
    pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$",
    description="Where notifications go by email (N2); none: the in-app inbox only.",
    examples=["ana.li@example.com"],
)
COUNTRY = Field(
    min_length=2, max_length=2, pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2 code.", examples=["GB"]
)


class AccountStatus(StrEnum):
    """Where an account is in its life (A1); the allowed moves are in services/account/domain/accounts.py."""

    PENDING = "pending"
    ACTIVE = "active"
    RESTRICTED = "restricted"
    LOCKED = "locked"
    CLOSED = "closed"


class SecurityMethod(StrEnum):
    """How a buyer proves it is them for a payment above the region's threshold (A6)."""

    PIN = "pin"
    TOTP = "totp"


class Limits(BaseModel):
    """What an account may pay at its level in its region (A3)."""

    model_config = STRICT

    per_payment: Money
    daily: Money
    monthly: Money


class SuspiciousActivity(StrEnum):
    REPEATED_FAILED_CHECKS = "repeated_failed_checks"
    NEW_COUNTRY_LOGIN = "new_country_login"


# ---------------------------------------------------------------------------- commands


class RegisterAccount(Command):
    """Open an account: a phone number that will receive a one-time code, and a password."""

    topic = ACCOUNT_COMMANDS

    account_id: str = ACCOUNT_ID
    phone: str = Field(
        min_length=4, max_length=32, description="Phone number, E.164 or with a leading +.", examples=["+447700900123"]
    )
    full_name: str = Field(min_length=1, max_length=200, description="The name the user gives.", examples=["Ana Li"])
    country: str = COUNTRY
    language: str = Field(
        default="en", min_length=2, max_length=12, pattern=r"^[a-z]{2}(-[A-Z]{2})?$", examples=["zh-CN"]
    )
    password: Sealed = Field(description="Sealed for purpose password:<account_id>.")
    email: str | None = EMAIL


class ResendPhoneCode(Command):
    """Send a new one-time code (the old one stops working); limited per account."""

    topic = ACCOUNT_COMMANDS

    account_id: str = ACCOUNT_ID


class VerifyPhone(Command):
    """Prove the phone number with the one-time code it received: the account becomes active."""

    topic = ACCOUNT_COMMANDS

    account_id: str = ACCOUNT_ID
    code: Sealed = Field(description="Sealed for purpose phone-code:<account_id>.")


class SignIn(Command):
    """A sign-in attempt from a country; a wrong password counts as a failed check (A6)."""

    topic = ACCOUNT_COMMANDS

    account_id: str = ACCOUNT_ID
    password: Sealed = Field(description="Sealed for purpose password:<account_id>.")
    country: str = COUNTRY


class EnrolTotp(Command):
    """Turn on (or move to a new device) two-factor codes: the authenticator's secret and a first
    code it made, confirmed with the password."""

    topic = ACCOUNT_COMMANDS

    account_id: str = ACCOUNT_ID
    secret: Sealed = Field(description="Base32 TOTP secret, sealed for purpose totp-secret:<account_id>.")
    code: Sealed = Field(description="A current code, sealed for purpose totp-code:<account_id>.")
    password: Sealed = Field(description="Sealed for purpose password:<account_id>.")


class SetPaymentPin(Command):
    """Set or change the payment PIN (6 digits), confirmed with the password."""

    topic = ACCOUNT_COMMANDS

    account_id: str = ACCOUNT_ID
    pin: Sealed = Field(description="Sealed for purpose pin:<account_id>.")
    password: Sealed = Field(description="Sealed for purpose password:<account_id>.")


class RestrictAccount(Command):
    """An operator restricts an account (no payments) pending review."""

    topic = ACCOUNT_COMMANDS

    account_id: str = ACCOUNT_ID
    operator_id: str = OPERATOR_ID
    reason: str = Field(min_length=3, max_length=500, description="Why, for the audit trail.")


class UnlockAccount(Command):
    """An operator reviewed the proof and returns a locked or restricted account to active."""

    topic = ACCOUNT_COMMANDS

    account_id: str = ACCOUNT_ID
    operator_id: str = OPERATOR_ID
    reason: str = Field(min_length=3, max_length=500, description="What was reviewed, for the audit trail.")


class CloseAccount(Command):
    """Close an account for good (the holder, with the password)."""

    topic = ACCOUNT_COMMANDS

    account_id: str = ACCOUNT_ID
    password: Sealed = Field(description="Sealed for purpose password:<account_id>.")


# ---------------------------------------------------------------------------- events


class AccountRegistered(Event):
    """A new account (pending until its phone is verified), with its region's facts for read copies."""

    topic = ACCOUNT_EVENTS

    account_id: str = ACCOUNT_ID
    phone_masked: str = Field(description="The phone number with all but its last three digits hidden.")
    full_name: str
    country: str = COUNTRY
    currency: str = Field(description="The wallet's currency: the region's.", examples=["GBP"])
    language: str
    limits: Limits = Field(description="What the account may pay at L0 (IdentityVerified brings more).")
    security_check_above: Money = Field(description="Payments above this need the PIN or a TOTP code.")
    enhanced_verification_required: bool = Field(description="Whether the region's top limits need L2.")
    email: str | None = EMAIL


class PhoneCodeSent(Event):
    """A one-time code went to the phone (the code itself only to the phone)."""

    topic = ACCOUNT_EVENTS

    account_id: str = ACCOUNT_ID
    phone_masked: str
    expires_at: WireDatetime
    resends_left: int = Field(ge=0)


class PhoneVerificationFailed(Event):
    topic = ACCOUNT_EVENTS

    account_id: str = ACCOUNT_ID
    reason: str = Field(examples=["code_wrong", "code_expired", "too_many_attempts"])
    detail: str
    attempts_left: int = Field(ge=0)


class AccountStatusChanged(Event):
    """Every status move, with who made it and why (the audit trail of A1 and A6)."""

    topic = ACCOUNT_EVENTS

    account_id: str = ACCOUNT_ID
    status: Annotated[AccountStatus, AcceptJsonForm()]
    previous_status: Annotated[AccountStatus, AcceptJsonForm()] | None
    reason: str
    changed_by: str = Field(description="An operator id, the account holder, or 'system'.")


class SignedIn(Event):
    topic = ACCOUNT_EVENTS

    account_id: str = ACCOUNT_ID
    country: str = COUNTRY


class SecurityCheckFailed(Event):
    """A wrong password, PIN or TOTP code; enough of them in the window lock the account."""

    topic = ACCOUNT_EVENTS

    account_id: str = ACCOUNT_ID
    check: str = Field(examples=["password", "pin", "totp"])
    failures_in_window: int = Field(ge=1)
    limit: int = Field(ge=1, description="Failures in the window that lock the account.")


class SuspiciousActivityDetected(Event):
    topic = ACCOUNT_EVENTS

    account_id: str = ACCOUNT_ID
    kind: Annotated[SuspiciousActivity, AcceptJsonForm()]
    detail: str


class TotpEnrolled(Event):
    topic = ACCOUNT_EVENTS

    account_id: str = ACCOUNT_ID


class PaymentPinSet(Event):
    topic = ACCOUNT_EVENTS

    account_id: str = ACCOUNT_ID
