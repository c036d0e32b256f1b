"""TradeGuard's message contracts: every command, event and topic the services share.

A marketplace can depend on this package alone: it imports pydantic and nothing
else of TradeGuard. Publish a command by wrapping it in an :class:`Envelope`
and sending ``envelope.model_dump_json()`` to ``command.topic.name`` keyed by
``command.partition_key``; read events by validating the envelope with
:func:`parse_envelope` and the payload with :func:`payload_model`.
"""

from __future__ import annotations

from contracts.accounts import (
    CreditWallet,
    DebitWallet,
    DeclineReason,
    FundWallet,
    WalletCredited,
    WalletDebitDeclined,
    WalletDebited,
    WalletFunded,
)
from contracts.envelope import Command, Envelope, Event, Message, RawEnvelope, envelope_for
from contracts.escrow import FundsHeld, FundsReleased, HoldFunds, ReleaseFunds
from contracts.money import Money
from contracts.orders import Checkout, ConfirmReceipt, OrderStatus, OrderStatusChanged
from contracts.payments import CapturePayment, PaymentCaptured, PaymentFailed
from contracts.rejections import CommandRejected
from contracts.topics import ALL_TOPICS, Key, Topic

MESSAGE_TYPES: tuple[type[Message], ...] = (
    Checkout,
    ConfirmReceipt,
    OrderStatusChanged,
    FundWallet,
    DebitWallet,
    CreditWallet,
    WalletFunded,
    WalletDebited,
    WalletDebitDeclined,
    WalletCredited,
    CapturePayment,
    PaymentCaptured,
    PaymentFailed,
    HoldFunds,
    ReleaseFunds,
    FundsHeld,
    FundsReleased,
    CommandRejected,
)

_BY_TYPE: dict[tuple[str, int], type[Message]] = {(m.message_type, m.version): m for m in MESSAGE_TYPES}


class UnknownMessageType(LookupError):
    """Raised when an envelope names a type or version no contract defines."""


def payload_model(message_type: str, version: int) -> type[Message]:
    """The payload class for a type and version named in an envelope."""
    try:
        return _BY_TYPE[(message_type, version)]
    except KeyError:
        msg = f"unknown message type {message_type!r} version {version}"
        raise UnknownMessageType(msg) from None


def parse_envelope(data: bytes | str) -> RawEnvelope:
    """Validate the envelope of a record value; the payload stays a dict."""
    return RawEnvelope.model_validate_json(data)


__all__ = [
    "ALL_TOPICS",
    "MESSAGE_TYPES",
    "CapturePayment",
    "Checkout",
    "Command",
    "CommandRejected",
    "ConfirmReceipt",
    "CreditWallet",
    "DebitWallet",
    "DeclineReason",
    "Envelope",
    "Event",
    "FundWallet",
    "FundsHeld",
    "FundsReleased",
    "HoldFunds",
    "Key",
    "Message",
    "Money",
    "OrderStatus",
    "OrderStatusChanged",
    "PaymentCaptured",
    "PaymentFailed",
    "RawEnvelope",
    "ReleaseFunds",
    "Topic",
    "UnknownMessageType",
    "WalletCredited",
    "WalletDebitDeclined",
    "WalletDebited",
    "WalletFunded",
    "envelope_for",
    "parse_envelope",
    "payload_model",
]
