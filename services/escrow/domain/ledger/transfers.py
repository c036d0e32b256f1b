"""E1 transfers: kinds and codes, what a caller asks (:class:`Transfer`) and what the log keeps (:class:`TransferRecord`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from enum import StrEnum
from typing import Any

from contracts.money import Money
from services.escrow.domain.ledger._text import require_aware
from services.escrow.domain.ledger.accounts import AccountId


class TransferKind(StrEnum):
    """Which phase a transfer is (the two-phase rules are in the module docstring)."""

    SINGLE_PHASE = "single_phase"
    PENDING = "pending"
    POST_PENDING = "post_pending"
    VOID_PENDING = "void_pending"
    EXPIRE_PENDING = "expire_pending"


ENDINGS = frozenset({TransferKind.POST_PENDING, TransferKind.VOID_PENDING, TransferKind.EXPIRE_PENDING})


class TransferCode(StrEnum):
    """Why money moved (TigerBeetle's ``code``); a post, void or expiry keeps its pending's."""

    HOLD = "hold"
    RELEASE = "release"
    FEE = "fee"
    REFUND = "refund"
    FX_CONVERSION = "fx_conversion"


class PendingStatus(StrEnum):
    """Where a pending transfer stands; ``expired`` is voided by its timeout."""

    PENDING = "pending"
    POSTED = "posted"
    VOIDED = "voided"
    EXPIRED = "expired"


STATUS_OF_ENDING = {
    TransferKind.POST_PENDING: PendingStatus.POSTED,
    TransferKind.VOID_PENDING: PendingStatus.VOIDED,
    TransferKind.EXPIRE_PENDING: PendingStatus.EXPIRED,
}


@dataclass(frozen=True, slots=True)
class Transfer:
    """Move ``amount`` from ``debit_account`` to ``credit_account`` for one order (what a caller asks)."""

    transfer_id: str
    debit_account: AccountId
    credit_account: AccountId
    amount: Money
    order_id: str
    code: TransferCode
    kind: TransferKind = TransferKind.SINGLE_PHASE
    pending_id: str | None = None
    expires_at: datetime | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", TransferKind(self.kind))
        object.__setattr__(self, "code", TransferCode(self.code))
        if not self.transfer_id or not self.order_id:
            raise ValueError("a transfer needs a transfer_id and an order_id")
        ends = self.kind in ENDINGS
        if ends != (self.pending_id is not None):
            raise ValueError(f"transfer {self.transfer_id}: a {self.kind} transfer {_needs_pending_id(ends)}")
        if self.expires_at is not None:
            if self.kind is not TransferKind.PENDING:
                raise ValueError(f"transfer {self.transfer_id}: only a pending transfer has a timeout")
            require_aware(self.expires_at, "expires_at")

    def post(self, transfer_id: str, amount: Money | None = None) -> Transfer:
        """The transfer posting this pending one: all of it, or ``amount`` of it (the rest is released)."""
        return self._ending(transfer_id, TransferKind.POST_PENDING, self.amount if amount is None else amount)

    def void(self, transfer_id: str) -> Transfer:
        """The transfer voiding this pending one (all of it is released)."""
        return self._ending(transfer_id, TransferKind.VOID_PENDING, self.amount)

    def expiry(self) -> Transfer:
        """The transfer recording this pending one's timeout; its id is ``<pending id>:expired``."""
        return self._ending(f"{self.transfer_id}:expired", TransferKind.EXPIRE_PENDING, self.amount)

    def _ending(self, transfer_id: str, kind: TransferKind, amount: Money) -> Transfer:
        if self.kind is not TransferKind.PENDING:
            raise ValueError(f"transfer {self.transfer_id} is {self.kind}, not pending: it cannot be ended")
        return Transfer(
            transfer_id,
            self.debit_account,
            self.credit_account,
            amount,
            self.order_id,
            self.code,
            kind,
            pending_id=self.transfer_id,
        )


def _needs_pending_id(ends: bool) -> str:
    return "names the pending transfer it ends in pending_id" if ends else "has no pending_id"


@dataclass(frozen=True, slots=True)
class TransferRecord:
    """One row of the append-only log: a transfer as applied, in plain fields.

    ``seq`` is the record's position in the log (0, 1, 2, ...), ``applied_at`` the ledger time it
    was applied, and ``linked_set`` the id of the first transfer of the linked set it came in
    (``None`` when it was applied alone).
    """

    seq: int
    transfer_id: str
    kind: str
    debit_account: str
    credit_account: str
    amount_minor: int
    currency: str
    order_id: str
    code: str
    pending_id: str | None
    expires_at: datetime | None
    applied_at: datetime
    linked_set: str | None

    @classmethod
    def of(cls, transfer: Transfer, seq: int, applied_at: datetime, linked_set: str | None) -> TransferRecord:
        return cls(
            seq=seq,
            transfer_id=transfer.transfer_id,
            kind=str(transfer.kind),
            debit_account=transfer.debit_account.code,
            credit_account=transfer.credit_account.code,
            amount_minor=transfer.amount.amount_minor,
            currency=transfer.amount.currency,
            order_id=transfer.order_id,
            code=str(transfer.code),
            pending_id=transfer.pending_id,
            expires_at=transfer.expires_at,
            applied_at=applied_at,
            linked_set=linked_set,
        )

    @property
    def transfer(self) -> Transfer:
        """The transfer this record applied; ValueError when a field cannot be read back."""
        try:
            amount = Money(amount_minor=self.amount_minor, currency=self.currency)
        except ValueError as error:  # pydantic's ValidationError is a ValueError
            raise ValueError(f"record {self.seq} ({self.transfer_id}): amount: {error}") from None
        return Transfer(
            self.transfer_id,
            AccountId.parse(self.debit_account),
            AccountId.parse(self.credit_account),
            amount,
            self.order_id,
            TransferCode(self.code),
            TransferKind(self.kind),
            self.pending_id,
            self.expires_at,
        )

    def to_row(self) -> dict[str, Any]:
        """The record as a column -> value mapping (every value a str, int, datetime or None)."""
        return asdict(self)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> TransferRecord:
        """A record from a row of :meth:`to_row`'s shape (extra columns such as a primary key are ignored)."""
        return cls(**{field.name: row[field.name] for field in fields(cls)})
