"""From a record's bytes to a validated message, in one call and one JSON parse.

:func:`decode_message` gives a verdict for any bytes: the envelope with its payload
validated as the model its ``type`` and ``version`` name, or :class:`InvalidMessage`
saying why not. Nothing else escapes it.

The JSON is parsed once, by pydantic-core, and validated strictly as a tagged union of the
typed envelopes (``Envelope[Checkout]``, ...), discriminated natively on ``type`` and then
``version``: the one model they name validates the rest. (A callable discriminator would
also work, but pydantic-core converts the whole parsed JSON to Python objects to call it,
which costs more than the validation itself.)
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, GetCoreSchemaHandler, GetPydanticSchema, TypeAdapter, ValidationError
from pydantic_core import CoreSchema, ErrorDetails, core_schema

from contracts.accounts import (
    AuthorizePayment,
    CreditWallet,
    FundWallet,
    PaymentAuthorizationDeclined,
    PaymentAuthorized,
    WalletCredited,
    WalletFunded,
)
from contracts.bindings import (
    GrantMarketplaceAccess,
    MarketplaceAccessGranted,
    MarketplaceAccessRevoked,
    RevokeMarketplaceAccess,
)
from contracts.disputes import (
    AnswerDispute,
    DisputeAnswered,
    DisputeOpened,
    DisputeResolved,
    OpenDispute,
    ResolveDispute,
)
from contracts.envelope import Envelope, Message, RawEnvelope
from contracts.escrow import (
    FreezeFunds,
    FundsFrozen,
    FundsHeld,
    FundsReleased,
    FundsReturned,
    HoldFunds,
    ReleaseFunds,
    ReturnFunds,
)
from contracts.funding_sources import (
    AddBankAccount,
    AddCard,
    DefaultFundingSourceChanged,
    FundingSourceAdded,
    FundingSourceRemoved,
    RemoveFundingSource,
    SetDefaultFundingSource,
)
from contracts.notifications import (
    MarkNotificationsRead,
    NotificationEmailed,
    NotificationUndeliverable,
    RecordEmailOutcome,
    RedriveNotification,
    SetNotificationPreferences,
)
from contracts.orders import (
    AutoReleaseApproaching,
    Checkout,
    ConfirmReceipt,
    ExtendProtection,
    OperatorActionTaken,
    OperatorOrderAction,
    OrderDeadlineReached,
    OrderStatusChanged,
    PayAgain,
    ProtectionExtended,
    RequestRefund,
)
from contracts.payments import (
    CapturePayment,
    PaymentCaptured,
    PaymentFailed,
    PaymentRefunded,
    PriceQuoted,
    RecordNetworkAnswer,
    RefundFailed,
    RefundPayment,
    ReleaseSpending,
    RequestQuote,
)
from contracts.registration import (
    AccountRegistered,
    AccountStatusChanged,
    CloseAccount,
    EnrolTotp,
    PaymentPinSet,
    PhoneCodeSent,
    PhoneVerificationFailed,
    RegisterAccount,
    ResendPhoneCode,
    RestrictAccount,
    SecurityCheckFailed,
    SetPaymentPin,
    SignedIn,
    SignIn,
    SuspiciousActivityDetected,
    TotpEnrolled,
    UnlockAccount,
    VerifyPhone,
)
from contracts.rejections import CommandRejected
from contracts.verification import (
    ApproveIdentity,
    IdentityRejected,
    IdentitySubmitted,
    IdentityVerified,
    RejectIdentity,
    SubmitIdentity,
)

MESSAGE_TYPES: tuple[type[Message], ...] = (
    Checkout,
    ConfirmReceipt,
    RequestRefund,
    PayAgain,
    ExtendProtection,
    OrderDeadlineReached,
    OperatorOrderAction,
    OpenDispute,
    AnswerDispute,
    ResolveDispute,
    OrderStatusChanged,
    AutoReleaseApproaching,
    ProtectionExtended,
    OperatorActionTaken,
    DisputeOpened,
    DisputeAnswered,
    DisputeResolved,
    FreezeFunds,
    FundsFrozen,
    FundWallet,
    AuthorizePayment,
    CreditWallet,
    WalletFunded,
    PaymentAuthorized,
    PaymentAuthorizationDeclined,
    WalletCredited,
    RegisterAccount,
    ResendPhoneCode,
    VerifyPhone,
    SignIn,
    EnrolTotp,
    SetPaymentPin,
    RestrictAccount,
    UnlockAccount,
    CloseAccount,
    AccountRegistered,
    PhoneCodeSent,
    PhoneVerificationFailed,
    AccountStatusChanged,
    SignedIn,
    SecurityCheckFailed,
    SuspiciousActivityDetected,
    TotpEnrolled,
    PaymentPinSet,
    SubmitIdentity,
    ApproveIdentity,
    RejectIdentity,
    IdentitySubmitted,
    IdentityVerified,
    IdentityRejected,
    AddCard,
    AddBankAccount,
    SetDefaultFundingSource,
    RemoveFundingSource,
    FundingSourceAdded,
    DefaultFundingSourceChanged,
    FundingSourceRemoved,
    GrantMarketplaceAccess,
    RevokeMarketplaceAccess,
    MarketplaceAccessGranted,
    MarketplaceAccessRevoked,
    CapturePayment,
    PaymentCaptured,
    PaymentFailed,
    RecordNetworkAnswer,
    ReleaseSpending,
    RequestQuote,
    PriceQuoted,
    RefundPayment,
    PaymentRefunded,
    RefundFailed,
    HoldFunds,
    ReleaseFunds,
    ReturnFunds,
    FundsHeld,
    FundsReleased,
    FundsReturned,
    SetNotificationPreferences,
    MarkNotificationsRead,
    RecordEmailOutcome,
    RedriveNotification,
    NotificationEmailed,
    NotificationUndeliverable,
    CommandRejected,
)
"""Every message type and version a record may carry."""

_BY_TYPE: dict[tuple[str, int], type[Message]] = {(m.message_type, m.version): m for m in MESSAGE_TYPES}

MAX_REASON_CHARS = 1000
"""The longest :attr:`InvalidMessage.reason`."""
MAX_PROBLEMS = 10
"""At most this many validation problems are named in a reason; the rest are counted."""


class InvalidMessage(ValueError):
    """A record that is not a valid message; :attr:`reason` says why.

    The reason is for people and logs (and the dead-letter header): at most
    :data:`MAX_REASON_CHARS` characters, naming the JSON paths and what is wrong with them,
    never the values found there (they may hold secrets).
    """

    def __init__(self, reason: str) -> None:
        self.reason = _clip(reason, MAX_REASON_CHARS)
        super().__init__(self.reason)


class UnknownMessageType(InvalidMessage, LookupError):
    """An envelope names a type or version no contract defines."""

    def __init__(self, message_type: str, version: int) -> None:
        self.message_type = message_type
        self.version = version
        super().__init__(f"unknown message type {_clip(message_type, 100)!r} version {version}")


def payload_model(message_type: str, version: int) -> type[Message]:
    """The payload class for a type and version named in an envelope; :class:`UnknownMessageType` if none."""
    try:
        return _BY_TYPE[(message_type, version)]
    except KeyError:
        raise UnknownMessageType(message_type, version) from None


def parse_envelope(data: bytes | str) -> RawEnvelope:
    """Validate the envelope of a record value strictly; the payload stays a dict.

    Raises pydantic's ``ValidationError``. Prefer :func:`decode_message`, which validates the
    payload too in the same pass and always raises :class:`InvalidMessage`.
    """
    return RawEnvelope.model_validate_json(data, strict=True)


# --- the decoder -----------------------------------------------------------------------------


def _decoder_schema(_source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
    """Tagged unions pydantic-core resolves natively on the parsed JSON: by ``type``, then by ``version``."""
    versions: dict[str, dict[Hashable, CoreSchema]] = {}
    for message in MESSAGE_TYPES:
        versions.setdefault(message.message_type, {})[message.version] = handler.generate_schema(
            Envelope[message]  # type: ignore[valid-type]
        )
    return core_schema.tagged_union_schema(
        {
            name: core_schema.tagged_union_schema(by_version, discriminator="version")
            for name, by_version in versions.items()
        },
        discriminator="type",
    )


_DECODER: TypeAdapter[Envelope[Any]] = TypeAdapter(Annotated[Envelope[Any], GetPydanticSchema(_decoder_schema)])
_TYPE_NAMES = frozenset(m.message_type for m in MESSAGE_TYPES)
_NO_CONTRACT = frozenset({"union_tag_invalid", "union_tag_not_found"})


class _Head(BaseModel):
    """The two fields that pick the contract; read only when they named none."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    type: str
    version: int


_HEAD = TypeAdapter(_Head)


def decode_message(value: bytes) -> Envelope[Any]:
    """The envelope in a record value, its payload validated as the :class:`Message` it names.

    Raises :class:`InvalidMessage` (:class:`UnknownMessageType` for a type or version no contract
    defines) for anything else: empty or non-UTF-8 bytes, text that is not JSON, JSON that is not
    an object, a missing or mistyped field, an invalid payload, an envelope whose ``type`` and
    ``version`` do not name its payload.

    One strict JSON parse, by pydantic-core, for every record that names a known type and
    version, valid or not. Only a record naming none is read a second time, to say which field
    is missing or mistyped (or that the type or version is unknown).
    """
    if isinstance(value, memoryview):
        value = value.tobytes()
    if not isinstance(value, bytes | bytearray | str):
        raise InvalidMessage(f"a record value must be bytes, not {type(value).__name__}")
    try:
        return _DECODER.validate_json(value, strict=True)
    except ValidationError as error:
        errors = error.errors(include_url=False, include_context=False, include_input=False)
    # Outside the except block: the ValidationError (which quotes the input) is not chained.
    if len(errors) == 1 and errors[0]["type"] in _NO_CONTRACT and len(errors[0]["loc"]) <= 1:
        raise _no_contract(value)
    raise InvalidMessage(describe_errors(errors))


def _no_contract(value: bytes | bytearray | str) -> InvalidMessage:
    """Why a JSON object named no contract: its type or version is missing, mistyped or unknown."""
    try:
        head = _HEAD.validate_json(value, strict=True)
    except ValidationError as error:
        errors = error.errors(include_url=False, include_context=False, include_input=False)
        return InvalidMessage(describe_errors(errors))
    return UnknownMessageType(head.type, head.version)


# --- reasons ---------------------------------------------------------------------------------

# Error types whose message may quote the input; they are replaced by a fixed text.
_VALUE_FREE: dict[str, str] = {
    "uuid_parsing": "Input should be a valid UUID",
    "value_error": "Invalid value",
    "assertion_error": "Invalid value",
    "currency_unknown": "not an accepted ISO 4217 currency code",
    "currency_not_upper_case": "currency codes are upper case",
    "currency_not_money": "an ISO 4217 code without a minor unit (not money) is refused",
}


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _path(loc: Sequence[int | str]) -> str:
    parts = list(loc)
    if parts and parts[0] in _TYPE_NAMES:
        parts = parts[2:]  # the tagged unions' branches (type, then version), not fields
    path = ""
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            shown = _clip("".join(c if c.isprintable() else "?" for c in part), 60)
            path += f".{shown}" if path else shown
    return path or "(record)"


def describe_errors(errors: Sequence[ErrorDetails]) -> str:
    """A bounded, value-free account of validation errors: ``path: message`` for the first few."""
    if len(errors) == 1 and errors[0]["type"] == "json_invalid":
        return _clip(f"not JSON: {errors[0]['msg']}", MAX_REASON_CHARS)
    named = [f"{_path(e['loc'])}: {_clip(_VALUE_FREE.get(e['type'], e['msg']), 200)}" for e in errors[:MAX_PROBLEMS]]
    more = len(errors) - len(named)
    text = "; ".join(named) + (f"; and {more} more" if more else "")
    noun = "problem" if len(errors) == 1 else "problems"
    return _clip(f"invalid message, {len(errors)} {noun}: {text}", MAX_REASON_CHARS)
