"""TradeGuard's message contracts: every command, event and topic the services share.

A marketplace can depend on this package alone: it imports pydantic, pycountry and
babel and nothing else of TradeGuard. Publish a command by wrapping it in an
:class:`Envelope` (:func:`envelope_for`) and sending ``envelope.model_dump_json()`` to
``command.topic.name`` keyed by ``command.partition_key``; read a record with
:func:`decode_message`, which returns the envelope with its payload validated, or raises
:class:`InvalidMessage` saying why not. Every model is strict: no coercion on the wire.
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
from contracts.decoding import (
    MESSAGE_TYPES,
    InvalidMessage,
    UnknownMessageType,
    decode_message,
    parse_envelope,
    payload_model,
)
from contracts.envelope import Command, Envelope, Event, Message, RawEnvelope, envelope_for
from contracts.escrow import FundsHeld, FundsReleased, HoldFunds, ReleaseFunds
from contracts.money import Balance, Money, max_amount_minor, max_balance_minor, minor_unit_exponent
from contracts.orders import Checkout, ConfirmReceipt, OrderStatus, OrderStatusChanged
from contracts.payments import CapturePayment, PaymentCaptured, PaymentFailed
from contracts.rejections import CommandRejected
from contracts.topics import ALL_TOPICS, Key, Topic

__all__ = [
    "ALL_TOPICS",
    "MESSAGE_TYPES",
    "Balance",
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
    "InvalidMessage",
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
    "decode_message",
    "envelope_for",
    "max_amount_minor",
    "max_balance_minor",
    "minor_unit_exponent",
    "parse_envelope",
    "payload_model",
]
