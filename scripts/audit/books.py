"""G1: what the books audit reads, as plain snapshots of each service's own read API.

Each snapshot is built from the JSON a service answers (``from_json``), so the checks
(:mod:`scripts.audit.checks`) are pure functions of data and can be tested on snapshots made by
hand, and the HTTP reader (:mod:`scripts.audit.reader`) only fetches and parses. A malformed
answer raises :class:`SnapshotError` naming the field; the reader reports it as a source it
could not read, never as books that balance.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from contracts import Money, OrderStatus
from services.escrow.domain.ledger import AccountBalance, AccountId, TransferRecord


class SnapshotError(ValueError):
    """A service answered JSON that is not what its read API promises."""


def _money(data: Mapping[str, Any], name: str) -> Money:
    try:
        return Money.model_validate(data[name])
    except (KeyError, ValueError, TypeError) as error:
        raise SnapshotError(f"{name}: not money ({error})") from None


def _money_or_none(data: Mapping[str, Any], name: str) -> Money | None:
    return None if data.get(name) is None else _money(data, name)


def _when(text: Any, name: str) -> datetime:
    try:
        moment = datetime.fromisoformat(str(text))
    except ValueError:
        raise SnapshotError(f"{name}: not an ISO 8601 time: {str(text)[:40]!r}") from None
    if moment.tzinfo is None:
        raise SnapshotError(f"{name}: {text} has no time zone")
    return moment


def _text(data: Mapping[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value:
        raise SnapshotError(f"{name}: a non-empty string, not {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class OrderSnapshot:
    """One order as the saga tells it (``GET /orders``)."""

    order_id: str
    buyer_id: str
    seller_id: str
    amount: Money
    status: OrderStatus
    updated_at: datetime
    reason: str | None = None
    returned_minor: int = 0  # of the price, out of escrow towards the buyer
    refunded_minor: int = 0  # of the price, back with the buyer
    refunding: str | None = None  # the refund under way, if any
    attention: str | None = None  # why an operator must act, if one must (S6)
    next_deadline_at: datetime | None = None  # the order's earliest timer (S4)

    @property
    def still_held(self) -> Money:
        """What escrow should hold for the seller while the order is in escrow."""
        return Money(amount_minor=self.amount.amount_minor - self.returned_minor, currency=self.amount.currency)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> OrderSnapshot:
        try:
            status = OrderStatus(str(data.get("status")))
        except ValueError:
            raise SnapshotError(f"status: not an order status: {data.get('status')!r}") from None
        returned, refunded = _money_or_none(data, "returned"), _money_or_none(data, "refunded")
        return cls(
            order_id=_text(data, "order_id"),
            buyer_id=_text(data, "buyer_id"),
            seller_id=_text(data, "seller_id"),
            amount=_money(data, "amount"),
            status=status,
            updated_at=_when(data.get("updated_at"), "updated_at"),
            reason=data.get("reason") or None,
            returned_minor=0 if returned is None else returned.amount_minor,
            refunded_minor=0 if refunded is None else refunded.amount_minor,
            refunding=data.get("refunding") or None,
            attention=data.get("attention") or None,
            next_deadline_at=_when(deadline, "next_deadline_at")
            if (deadline := data.get("next_deadline_at"))
            else None,
        )


@dataclass(frozen=True, slots=True)
class PaymentSnapshot:
    """One payment as the payment service tells it (``GET /payments?status=...``)."""

    order_id: str
    amount: Money  # the price, in the seller's currency
    status: str
    refunded: Money | None = None  # of the price, so far

    @property
    def refunded_minor(self) -> int:
        return 0 if self.refunded is None else self.refunded.amount_minor

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PaymentSnapshot:
        return cls(
            order_id=_text(data, "order_id"),
            amount=_money(data, "amount"),
            status=_text(data, "status"),
            refunded=_money_or_none(data, "refunded"),
        )


@dataclass(frozen=True, slots=True)
class HoldSnapshot:
    """One escrow hold as the escrow service tells it (``GET /holds``)."""

    order_id: str
    buyer_id: str
    seller_id: str
    amount: Money
    still_held: Money  # once released: what the seller was paid
    status: str  # held, released, returned

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> HoldSnapshot:
        return cls(
            order_id=_text(data, "order_id"),
            buyer_id=_text(data, "buyer_id"),
            seller_id=_text(data, "seller_id"),
            amount=_money(data, "amount"),
            still_held=_money(data, "still_held"),
            status=_text(data, "status"),
        )


def record_from_json(data: Mapping[str, Any]) -> TransferRecord:
    """A ledger record of ``GET /ledger/records`` (its row ``id`` is the reader's, for paging)."""
    try:
        row = {item.name: data[item.name] for item in fields(TransferRecord)}
    except KeyError as missing:
        raise SnapshotError(f"ledger record {data.get('id')}: no field {missing}") from None
    row["applied_at"] = _when(row["applied_at"], "applied_at")
    if row["expires_at"] is not None:
        row["expires_at"] = _when(row["expires_at"], "expires_at")
    for name in ("seq", "amount_minor"):
        if not isinstance(row[name], int) or isinstance(row[name], bool):
            raise SnapshotError(f"ledger record {data.get('id')}: {name} is not a whole number: {row[name]!r}")
    return TransferRecord.from_row(row)


def balance_from_json(data: Mapping[str, Any]) -> AccountBalance:
    """An account's four totals of ``GET /ledger/balances``."""
    try:
        account = AccountId.parse(_text(data, "code"))
        figures = [data[name] for name in ("debits_pending", "debits_posted", "credits_pending", "credits_posted")]
    except (KeyError, ValueError) as error:
        raise SnapshotError(f"ledger balance {data.get('code')!r}: {error}") from None
    if not all(isinstance(figure, int) and not isinstance(figure, bool) for figure in figures):
        raise SnapshotError(f"ledger balance {account}: totals are whole numbers of minor units, not {figures}")
    return AccountBalance(account, *figures)


@dataclass(frozen=True, slots=True)
class LedgerSnapshot:
    """The escrow ledger's log and the balances it keeps (``GET /ledger/records``, ``/ledger/balances``)."""

    records: tuple[TransferRecord, ...] = ()
    balances: Mapping[AccountId, AccountBalance] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Books:
    """Everything the audit reads, and the stack's time when it was read (X8: the services' clock)."""

    taken_at: datetime
    ledger: LedgerSnapshot = field(default_factory=LedgerSnapshot)
    holds: tuple[HoldSnapshot, ...] = ()
    orders: tuple[OrderSnapshot, ...] = ()
    payments: tuple[PaymentSnapshot, ...] = ()
    """The captured payments (the only ones money moved for)."""
