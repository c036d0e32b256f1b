"""Escrow E1: a double-entry, two-phase ledger in the spirit of TigerBeetle (pure: no Kafka, no database).

Money moves only as :class:`Transfer` s between two :class:`AccountId` s of one currency. A
transfer debits one account and credits the other by the same amount, so for every currency the
sum of all debits equals the sum of all credits, posted and pending separately, by construction;
:meth:`Ledger.check` recomputes everything from the log and proves it.

**Accounts.** One per (kind, owner, currency), written ``kind:owner:currency``:

==================  ============  ============================================================
kind                owner         what it is
==================  ============  ============================================================
``buyer_funds_in``  buyer id      money captured from the buyer (the source of every hold)
``escrow_holding``  order id      what the platform holds for one order (E2)
``seller_payable``  seller id     what the platform owes a seller after release (E4)
``fee_revenue``     ``platform``  the platform's fees
``fx_position``     ``platform``  the platform's position in a currency after conversions (E4)
``refunds_out``     buyer id      what is owed back to the buyer after a refund (E3)
==================  ============  ============================================================

An account exists from its first transfer; its flags come from its kind, through one table,
:data:`ACCOUNT_FLAGS` (a :class:`Ledger` may be given another table):

==================  ==================================  ==================================
kind                ``debits_must_not_exceed_credits``  ``credits_must_not_exceed_debits``
==================  ==================================  ==================================
``buyer_funds_in``  no (it is the source)               yes: never return more than came in
``escrow_holding``  yes: never pay out more than held   no
``seller_payable``  yes                                 no
``fee_revenue``     yes                                 no
``fx_position``     no (either way, per currency)       no
``refunds_out``     yes                                 no
==================  ==================================  ==================================

As in TigerBeetle, ``debits_must_not_exceed_credits`` refuses a transfer after which
``debits_pending + debits_posted > credits_posted`` (``exceeds_credits``): pending debits already
count against the account, pending credits do not count for it yet. ``credits_must_not_exceed_debits``
is the mirror (``exceeds_debits``). No account's debits or credits may pass the balance bound of
:func:`contracts.money.max_balance_minor` (``overflows_debits`` / ``overflows_credits``), so every
figure fits a signed 64-bit column. Amounts are integer minor units, never floats.

**Two-phase transfers.** A transfer's :class:`TransferKind` is one of

- ``single_phase``: posted at once (``debits_posted`` / ``credits_posted`` move);
- ``pending``: a reservation (``debits_pending`` / ``credits_pending`` move), optionally with an
  aware ``expires_at``;
- ``post_pending``: ends a pending transfer by posting ``amount`` of it: at most the pending
  amount, and the rest is released; its accounts, order and code are the pending's;
- ``void_pending``: ends a pending transfer by releasing all of it (its amount is the pending's);
- ``expire_pending``: the void a pending transfer gets from its timeout (:meth:`Ledger.expire`).

A post, void or expiry is itself a new record in the log referencing the pending one by
``pending_id``; nothing in the log is ever changed. A pending transfer ends exactly once: a
second post or void is refused (``pending_already_posted``, ``pending_already_voided``,
``pending_expired``), and from its ``expires_at`` on it can no longer be posted or voided
(``pending_expired``) even before :meth:`Ledger.expire` has recorded its expiry.

**Linked sets.** :meth:`Ledger.apply_linked` applies a list of transfers in order, each checked
against the state the earlier ones left, all or nothing: if one is refused none is applied, and
:class:`LinkedSetRefused` (``linked_event_failed``) names which one and why.

**Idempotency.** A transfer id is used once. Applying the same transfer again (same id, same
content) returns the first record and changes nothing, whatever happened since; the same id with
other content is refused (``id_exists_with_different_content``). A linked set is repeated as a
whole: the same transfers in the same order return the first records.

**Worked example.** A buyer pays 25.00 USD for order-1; at release the platform keeps a 1.25 USD
fee and the seller is owed 23.75 USD (``usd(n)`` is ``Money(amount_minor=n, currency="USD")``)::

    ledger = Ledger()
    hold = Transfer(
        "hold:order-1", AccountId.buyer_funds_in("buyer-1", "USD"), AccountId.escrow_holding("order-1", "USD"),
        usd(2500), "order-1", TransferCode.HOLD, TransferKind.PENDING,
    )
    ledger.apply(hold, now=captured_at)
    # buyer_funds_in:buyer-1:USD   debits_pending  2500
    # escrow_holding:order-1:USD   credits_pending 2500

    escrow = AccountId.escrow_holding("order-1", "USD")
    ledger.apply_linked(
        [
            hold.post("release:order-1:post"),
            Transfer("release:order-1:seller", escrow, AccountId.seller_payable("seller-1", "USD"),
                     usd(2375), "order-1", TransferCode.RELEASE),
            Transfer("release:order-1:fee", escrow, AccountId.fee_revenue("USD"),
                     usd(125), "order-1", TransferCode.FEE),
        ],
        now=confirmed_at,
    )
    # buyer_funds_in:buyer-1:USD   debits_posted 2500
    # escrow_holding:order-1:USD   credits_posted 2500, debits_posted 2500: empty again
    # seller_payable:seller-1:USD  credits_posted 2375
    # fee_revenue:platform:USD     credits_posted 125
    # USD: debits posted 5000 == credits posted 5000; nothing pending

Had the fee been 1.26 USD, the third transfer would overdraw the escrow holding
(``exceeds_credits``: debits 25.01 USD against credits 25.00 USD), the set would be refused
naming it, and the hold would still be pending. A cross-currency release goes through the FX
position of each currency: ``escrow_holding:order-1:USD -> fx_position:platform:USD`` and
``fx_position:platform:EUR -> seller_payable:seller-1:EUR`` in one linked set.

**Persistence.** :class:`TransferRecord` is a frozen row of plain fields (``to_row`` /
``from_row``); the log is an append-only table of them. :meth:`Ledger.replay` rebuilds a ledger
from its records, re-checking every rule (a log that does not replay raises
:class:`LedgerCorrupt`), or with ``verify=False`` folds them in unchecked so that
:meth:`Ledger.check` can list every break of a damaged copy (the G1 audit).

**Errors**::

    CommandRefused (shared.errors)
    └── LedgerRefused           a transfer the ledger will not apply; nothing changed
        ├── InvalidTransfer     amount_not_positive, accounts_must_differ, currency_mismatch,
        │                       timeout_not_in_future
        ├── BalanceRefused      exceeds_credits, exceeds_debits, overflows_debits, overflows_credits
        ├── PendingRefused      pending_not_found, not_a_pending_transfer, pending_already_posted,
        │                       pending_already_voided, pending_expired, pending_not_expired,
        │                       pending_transfer_differs, exceeds_pending_amount,
        │                       amount_differs_from_pending
        ├── IdConflict          id_exists_with_different_content, id_exists_in_other_set
        └── LinkedSetRefused    linked_event_failed: one transfer of a linked set was refused
    TradeGuardError (shared.errors)
    └── LedgerCorrupt           a stored log that does not replay (a bug or damage, not a refusal)

A malformed value (an account owner with ``:``, a naive datetime, a post without
``pending_id``) is a programming error and raises :class:`ValueError` where it is built.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from functools import partial
from types import MappingProxyType
from typing import Any, Literal, TypeVar

from contracts.money import Money, max_balance_minor, minor_unit_exponent
from shared.errors import CommandRefused, TradeGuardError

__all__ = [
    "ACCOUNT_FLAGS",
    "PLATFORM",
    "AccountBalance",
    "AccountFlags",
    "AccountId",
    "AccountKind",
    "BalanceRefused",
    "BooksBreak",
    "BooksReport",
    "BreakCode",
    "IdConflict",
    "InvalidTransfer",
    "Ledger",
    "LedgerAccount",
    "LedgerCorrupt",
    "LedgerRefused",
    "LinkedSetRefused",
    "PendingRefused",
    "PendingStatus",
    "RefusalCode",
    "Transfer",
    "TransferCode",
    "TransferKind",
    "TransferRecord",
]

PLATFORM = "platform"
"""The owner of the platform's own accounts (fee revenue, FX position)."""

_K = TypeVar("_K")
_V = TypeVar("_V")
_R = TypeVar("_R")
Side = Literal["debit", "credit"]


# --------------------------------------------------------------------------- accounts


class AccountKind(StrEnum):
    """What a ledger account is for; see the module docstring's tables."""

    BUYER_FUNDS_IN = "buyer_funds_in"
    ESCROW_HOLDING = "escrow_holding"
    SELLER_PAYABLE = "seller_payable"
    FEE_REVENUE = "fee_revenue"
    FX_POSITION = "fx_position"
    REFUNDS_OUT = "refunds_out"


@dataclass(frozen=True, slots=True)
class AccountFlags:
    """Which way an account's balance may not go (TigerBeetle's account flags)."""

    debits_must_not_exceed_credits: bool = False
    credits_must_not_exceed_debits: bool = False

    def __str__(self) -> str:
        names = [
            name for name in ("debits_must_not_exceed_credits", "credits_must_not_exceed_debits") if getattr(self, name)
        ]
        return ", ".join(names) or "no flags"


_CREDIT_NORMAL = AccountFlags(debits_must_not_exceed_credits=True)

ACCOUNT_FLAGS: Mapping[AccountKind, AccountFlags] = MappingProxyType(
    {
        AccountKind.BUYER_FUNDS_IN: AccountFlags(credits_must_not_exceed_debits=True),
        AccountKind.ESCROW_HOLDING: _CREDIT_NORMAL,
        AccountKind.SELLER_PAYABLE: _CREDIT_NORMAL,
        AccountKind.FEE_REVENUE: _CREDIT_NORMAL,
        AccountKind.FX_POSITION: AccountFlags(),
        AccountKind.REFUNDS_OUT: _CREDIT_NORMAL,
    }
)
"""The flags of each account kind: the one place that says which balance may go which way."""


@dataclass(frozen=True, slots=True, order=True)
class AccountId:
    """One ledger account: ``kind:owner:currency``, for example ``escrow_holding:order-1:USD``."""

    kind: AccountKind
    owner: str
    currency: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", AccountKind(self.kind))
        # ':' separates the parts of the code, so an owner with one could not be parsed back.
        if not self.owner or ":" in self.owner:
            raise ValueError(f"an account owner is a non-empty id without ':', not {self.owner!r}")
        minor_unit_exponent(self.currency)  # ValueError for a code that is not money

    @property
    def code(self) -> str:
        return f"{self.kind}:{self.owner}:{self.currency}"

    def __str__(self) -> str:
        return self.code

    @classmethod
    def parse(cls, code: str) -> AccountId:
        """The account a code names; ValueError for anything that is not ``kind:owner:currency``."""
        parts = code.split(":")
        if len(parts) != 3:
            raise ValueError(f"an account code is kind:owner:currency, not {code!r}")
        kind, owner, currency = parts
        try:
            return cls(AccountKind(kind), owner, currency)
        except ValueError as error:
            raise ValueError(f"account code {code!r}: {error}") from None

    @classmethod
    def buyer_funds_in(cls, buyer_id: str, currency: str) -> AccountId:
        return cls(AccountKind.BUYER_FUNDS_IN, buyer_id, currency)

    @classmethod
    def escrow_holding(cls, order_id: str, currency: str) -> AccountId:
        return cls(AccountKind.ESCROW_HOLDING, order_id, currency)

    @classmethod
    def seller_payable(cls, seller_id: str, currency: str) -> AccountId:
        return cls(AccountKind.SELLER_PAYABLE, seller_id, currency)

    @classmethod
    def fee_revenue(cls, currency: str) -> AccountId:
        return cls(AccountKind.FEE_REVENUE, PLATFORM, currency)

    @classmethod
    def fx_position(cls, currency: str) -> AccountId:
        return cls(AccountKind.FX_POSITION, PLATFORM, currency)

    @classmethod
    def refunds_out(cls, buyer_id: str, currency: str) -> AccountId:
        return cls(AccountKind.REFUNDS_OUT, buyer_id, currency)


@dataclass(frozen=True, slots=True)
class LedgerAccount:
    """An account and the flags its kind gives it."""

    id: AccountId
    flags: AccountFlags


@dataclass(frozen=True, slots=True)
class AccountBalance:
    """An account's four totals in minor units of its currency, as TigerBeetle keeps them."""

    account: AccountId
    debits_pending: int = 0
    debits_posted: int = 0
    credits_pending: int = 0
    credits_posted: int = 0

    @property
    def debits(self) -> int:
        """Pending plus posted debits: what ``debits_must_not_exceed_credits`` counts."""
        return self.debits_pending + self.debits_posted

    @property
    def credits(self) -> int:
        """Pending plus posted credits: what ``credits_must_not_exceed_debits`` counts."""
        return self.credits_pending + self.credits_posted

    @property
    def credit_balance(self) -> int:
        """Posted credits minus posted debits (what a credit-normal account holds)."""
        return self.credits_posted - self.debits_posted

    @property
    def is_zero(self) -> bool:
        return not (self.debits_pending or self.debits_posted or self.credits_pending or self.credits_posted)

    def moved(self, side: Side, pending: int, posted: int) -> AccountBalance:
        """This balance with ``pending`` and ``posted`` added to its debit or credit side."""
        if side == "debit":
            return AccountBalance(
                self.account,
                self.debits_pending + pending,
                self.debits_posted + posted,
                self.credits_pending,
                self.credits_posted,
            )
        return AccountBalance(
            self.account,
            self.debits_pending,
            self.debits_posted,
            self.credits_pending + pending,
            self.credits_posted + posted,
        )


# --------------------------------------------------------------------------- transfers


class TransferKind(StrEnum):
    """Which phase a transfer is (the two-phase rules are in the module docstring)."""

    SINGLE_PHASE = "single_phase"
    PENDING = "pending"
    POST_PENDING = "post_pending"
    VOID_PENDING = "void_pending"
    EXPIRE_PENDING = "expire_pending"


_ENDINGS = frozenset({TransferKind.POST_PENDING, TransferKind.VOID_PENDING, TransferKind.EXPIRE_PENDING})


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


_STATUS_OF_ENDING = {
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
        ends = self.kind in _ENDINGS
        if ends != (self.pending_id is not None):
            raise ValueError(f"transfer {self.transfer_id}: a {self.kind} transfer {_needs_pending_id(ends)}")
        if self.expires_at is not None:
            if self.kind is not TransferKind.PENDING:
                raise ValueError(f"transfer {self.transfer_id}: only a pending transfer has a timeout")
            _require_aware(self.expires_at, "expires_at")

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


# --------------------------------------------------------------------------- errors


class RefusalCode(StrEnum):
    """The machine-readable ``code`` of every :class:`LedgerRefused`."""

    AMOUNT_NOT_POSITIVE = "amount_not_positive"
    ACCOUNTS_MUST_DIFFER = "accounts_must_differ"
    CURRENCY_MISMATCH = "currency_mismatch"
    TIMEOUT_NOT_IN_FUTURE = "timeout_not_in_future"
    EXCEEDS_CREDITS = "exceeds_credits"
    EXCEEDS_DEBITS = "exceeds_debits"
    OVERFLOWS_DEBITS = "overflows_debits"
    OVERFLOWS_CREDITS = "overflows_credits"
    PENDING_NOT_FOUND = "pending_not_found"
    NOT_A_PENDING_TRANSFER = "not_a_pending_transfer"
    PENDING_ALREADY_POSTED = "pending_already_posted"
    PENDING_ALREADY_VOIDED = "pending_already_voided"
    PENDING_EXPIRED = "pending_expired"
    PENDING_NOT_EXPIRED = "pending_not_expired"
    PENDING_TRANSFER_DIFFERS = "pending_transfer_differs"
    EXCEEDS_PENDING_AMOUNT = "exceeds_pending_amount"
    AMOUNT_DIFFERS_FROM_PENDING = "amount_differs_from_pending"
    ID_EXISTS_WITH_DIFFERENT_CONTENT = "id_exists_with_different_content"
    ID_EXISTS_IN_OTHER_SET = "id_exists_in_other_set"
    LINKED_EVENT_FAILED = "linked_event_failed"


class LedgerRefused(CommandRefused):
    """A transfer the ledger will not apply; nothing changed.

    ``code`` is the :class:`RefusalCode`'s value (``refusal`` the member), ``transfer_id`` names the
    transfer, and ``detail`` is the reason without that id.
    """

    def __init__(self, code: RefusalCode, transfer_id: str, reason: str) -> None:
        super().__init__(str(code), f"transfer {transfer_id}: {reason}")
        self.refusal = code
        self.transfer_id = transfer_id
        self.detail = reason  # the reason without the transfer's id, for a linked set's message


class InvalidTransfer(LedgerRefused):
    """The transfer itself is wrong whatever the balances: its amount, accounts, currency or timeout."""


class BalanceRefused(LedgerRefused):
    """The transfer would break an account's flags or pass the balance bound."""


class PendingRefused(LedgerRefused):
    """A post, void or expiry that does not fit the pending transfer it names."""


class IdConflict(LedgerRefused):
    """The transfer id was used before, for other content or outside this linked set."""


class LinkedSetRefused(LedgerRefused):
    """One transfer of a linked set was refused, so none was applied.

    ``index`` is its position in the set (0-based), ``transfer_id`` its id and ``cause`` its own
    refusal (also the exception's ``__cause__``).
    """

    def __init__(self, index: int, size: int, cause: LedgerRefused) -> None:
        reason = (
            f"linked set of {size} refused, none applied: transfer {index + 1} of {size} "
            f"was refused with {cause.code}: {cause.detail}"
        )
        LedgerRefused.__init__(self, RefusalCode.LINKED_EVENT_FAILED, cause.transfer_id, reason)
        self.index = index
        self.cause = cause


class LedgerCorrupt(TradeGuardError):
    """A stored log that does not replay: a record the rules refuse, or one that replays differently."""

    def __init__(self, seq: int, reason: str) -> None:
        super().__init__(f"ledger log record {seq}: {reason}")
        self.seq = seq


# --------------------------------------------------------------------------- the books check


class BreakCode(StrEnum):
    """What :meth:`Ledger.check` found wrong."""

    LOG_SEQUENCE = "log_sequence"
    UNREADABLE_RECORD = "unreadable_record"
    DUPLICATE_ID = "duplicate_id"
    INVALID_RECORD = "invalid_record"
    PENDING_REFERENCE = "pending_reference"
    BALANCE_MISMATCH = "balance_mismatch"
    STORED_BALANCE_MISMATCH = "stored_balance_mismatch"
    CURRENCY_UNBALANCED = "currency_unbalanced"
    FLAG_BROKEN = "flag_broken"
    NEGATIVE_PENDING = "negative_pending"
    PENDING_PAST_TIMEOUT = "pending_past_timeout"


@dataclass(frozen=True, slots=True)
class BooksBreak:
    """One thing wrong with the books: its code, what it is about (a record, account or currency), and figures."""

    code: BreakCode
    subject: str
    detail: str

    def __str__(self) -> str:
        return f"{self.code} {self.subject}: {self.detail}"


@dataclass(frozen=True, slots=True)
class BooksReport:
    """The result of :meth:`Ledger.check`: every break found, none when the books are right."""

    breaks: tuple[BooksBreak, ...]
    records: int
    accounts: int

    @property
    def ok(self) -> bool:
        return not self.breaks

    def codes(self) -> set[BreakCode]:
        return {found.code for found in self.breaks}

    def __str__(self) -> str:
        head = f"ledger: {self.records} records, {self.accounts} accounts, {len(self.breaks)} breaks"
        return "\n".join([head, *(f"  {found}" for found in self.breaks)])


# --------------------------------------------------------------------------- the ledger


class Ledger:
    """Accounts' balances and the append-only log of :class:`TransferRecord` s they derive from.

    Every method that changes the ledger takes ``now`` (an aware datetime from the service's
    clock): it is stored on the records, decides timeouts, and makes :meth:`replay` deterministic.
    """

    def __init__(self, flags: Mapping[AccountKind, AccountFlags] = ACCOUNT_FLAGS) -> None:
        missing = [str(kind) for kind in AccountKind if kind not in flags]
        if missing:
            raise ValueError(f"the flags table has no entry for {', '.join(missing)}")
        self._flags = MappingProxyType(dict(flags))
        self._records: list[TransferRecord] = []
        self._by_id: dict[str, TransferRecord] = {}
        self._transfers: dict[str, Transfer] = {}
        self._balances: dict[AccountId, AccountBalance] = {}
        self._open: dict[str, TransferRecord] = {}  # pending transfers not ended yet, by id
        self._endings: dict[str, TransferRecord] = {}  # pending id -> the record that ended it
        self._sets: dict[str, tuple[int, ...]] = {}  # linked set id -> the seqs of its records
        self._undo: list[Callable[[], object]] = []
        self._unverified = False

    # ----------------------------------------------------------------- reading

    @property
    def records(self) -> tuple[TransferRecord, ...]:
        """The whole log, oldest first."""
        return tuple(self._records)

    @property
    def next_seq(self) -> int:
        """The ``seq`` the next record will get (the log's length)."""
        return len(self._records)

    def records_from(self, seq: int) -> tuple[TransferRecord, ...]:
        """The records from ``seq`` on: what a unit of work has to append since it read ``next_seq``."""
        return tuple(self._records[seq:])

    def account(self, account: AccountId) -> LedgerAccount:
        return LedgerAccount(account, self._flags[account.kind])

    def accounts(self) -> list[LedgerAccount]:
        """Every account a transfer has touched, sorted by code."""
        return [self.account(account) for account in sorted(self._balances)]

    def balance(self, account: AccountId) -> AccountBalance:
        """The account's totals (all zero for an account no transfer has touched)."""
        return self._balances.get(account) or AccountBalance(account)

    def balances(self) -> dict[AccountId, AccountBalance]:
        return dict(self._balances)

    def record(self, transfer_id: str) -> TransferRecord | None:
        return self._by_id.get(transfer_id)

    def status(self, pending_id: str) -> PendingStatus:
        """Where a pending transfer stands; KeyError when no pending transfer has that id."""
        record = self._by_id.get(pending_id)
        if record is None or record.kind != TransferKind.PENDING:
            raise KeyError(pending_id)
        ending = self._endings.get(pending_id)
        return PendingStatus.PENDING if ending is None else _STATUS_OF_ENDING[TransferKind(ending.kind)]

    def open_pending(self) -> tuple[TransferRecord, ...]:
        """Pending transfers not posted, voided or expired yet, oldest first."""
        # sorted, not in dict order: undoing a refused linked set re-inserts at the end
        return tuple(sorted(self._open.values(), key=lambda record: record.seq))

    # ----------------------------------------------------------------- applying

    def apply(self, transfer: Transfer, *, now: datetime) -> TransferRecord:
        """Apply one transfer and return its record; the first record again for a repeat.

        Raises a :class:`LedgerRefused` (and changes nothing) when a rule refuses it.
        """
        self._require_writable(now)
        first = self._by_id.get(transfer.transfer_id)
        if first is not None and self._transfers[transfer.transfer_id] == transfer:
            return first
        return self._atomically(lambda: self._stage(transfer, now, None))

    def apply_linked(self, transfers: Sequence[Transfer], *, now: datetime) -> tuple[TransferRecord, ...]:
        """Apply ``transfers`` in order, all or none; the first records again for a repeat of the set.

        Raises :class:`LinkedSetRefused` naming the transfer that was refused, and changes nothing.
        """
        self._require_writable(now)
        if not transfers:
            raise ValueError("a linked set needs at least one transfer")
        repeat = self._repeat_of_set(transfers)
        if repeat is not None:
            return repeat
        return self._atomically(lambda: self._stage_set(transfers, now))

    def expire(self, now: datetime) -> tuple[TransferRecord, ...]:
        """Void every pending transfer whose ``expires_at`` is not after ``now``; their expiry records.

        Each expiry is its own record (``<pending id>:expired``); the earliest timeout goes first.
        All or none: should an expiry's id be taken by another transfer, :class:`IdConflict`.
        """
        self._require_writable(now)
        due = sorted((record for record in self._open.values() if _is_due(record, now)), key=_timeout_order)
        expiries = [self._transfers[record.transfer_id].expiry() for record in due]
        return self._atomically(lambda: tuple(self._stage(expiry, now, None) for expiry in expiries))

    # ----------------------------------------------------------------- the books

    def check(
        self, now: datetime | None = None, balances: Mapping[AccountId, AccountBalance] | None = None
    ) -> BooksReport:
        """Recompute every balance from the log and verify the books; a report of every break.

        Checks the log (sequence, unique ids, readable and valid records, every post, void and
        expiry ending one open pending transfer by no more than it reserved), that the ledger's
        balances (and ``balances``, for example those a service stored) equal the recomputed ones,
        that per currency debits equal credits (pending and posted apart), that every account keeps
        its flags and no pending figure is below zero, and, given ``now``, that no pending transfer
        is past its timeout.
        """
        fold = _Fold(self._records)
        breaks = list(fold.breaks)
        breaks += _compare_balances(self._balances, fold.balances, BreakCode.BALANCE_MISMATCH)
        if balances is not None:
            breaks += _compare_balances(balances, fold.balances, BreakCode.STORED_BALANCE_MISMATCH)
        breaks += _unbalanced_currencies(fold.balances.values())
        breaks += _broken_flags(fold.balances.values(), self._flags)
        breaks += _negative_pending(fold.balances.values())
        if now is not None:
            _require_aware(now, "now")
            breaks += _past_timeout(fold.open.values(), now)
        return BooksReport(tuple(breaks), len(self._records), len(fold.balances))

    @classmethod
    def replay(
        cls,
        records: Iterable[TransferRecord],
        *,
        flags: Mapping[AccountKind, AccountFlags] = ACCOUNT_FLAGS,
        verify: bool = True,
    ) -> Ledger:
        """The ledger a log describes.

        With ``verify`` (the default) every record is applied again through every rule and must
        come out identical, else :class:`LedgerCorrupt`. Without it the records are folded in
        unchecked, for :meth:`check` to list what is wrong with a damaged log.
        """
        ledger = cls(flags)
        log = list(records)
        if verify:
            for group in _linked_groups(log):
                ledger._replay_group(group)
        else:
            ledger._load(log)
        return ledger

    # ----------------------------------------------------------------- staging (all or nothing)

    def _require_writable(self, now: datetime) -> None:
        _require_aware(now, "now")
        if self._unverified:
            # Its state came from an unchecked log: new transfers checked against it would mean nothing.
            raise RuntimeError("a ledger replayed with verify=False is for check() only; replay it verified to apply")

    def _atomically(self, stage: Callable[[], _R]) -> _R:
        """Run ``stage``; if it raises, undo every write it made, newest first."""
        self._undo = []
        try:
            return stage()
        except BaseException:
            for undo in reversed(self._undo):
                undo()
            raise
        finally:
            self._undo = []

    def _stage_set(self, transfers: Sequence[Transfer], now: datetime) -> tuple[TransferRecord, ...]:
        set_id = transfers[0].transfer_id
        staged: list[TransferRecord] = []
        for index, transfer in enumerate(transfers):
            try:
                staged.append(self._stage(transfer, now, set_id))
            except LedgerRefused as cause:
                raise LinkedSetRefused(index, len(transfers), cause) from cause
        self._put(self._sets, set_id, tuple(record.seq for record in staged))
        return tuple(staged)

    def _stage(self, transfer: Transfer, now: datetime, linked_set: str | None) -> TransferRecord:
        """Check ``transfer`` against the current state and write it (undoably)."""
        self._refuse_used_id(transfer, linked_set)
        _refuse_invalid(transfer, now)
        pending_amount = self._pending_amount(transfer, now)
        pending, posted = _phase_deltas(transfer.kind, transfer.amount.amount_minor, pending_amount)
        debit = self.balance(transfer.debit_account).moved("debit", pending, posted)
        credit = self.balance(transfer.credit_account).moved("credit", pending, posted)
        for after in (debit, credit):
            self._refuse_broken_flags(transfer, after)
        record = TransferRecord.of(transfer, len(self._records), now, linked_set)
        self._write(record, transfer, debit, credit)
        return record

    def _write(self, record: TransferRecord, transfer: Transfer, debit: AccountBalance, credit: AccountBalance) -> None:
        self._records.append(record)
        self._undo.append(self._records.pop)
        self._put(self._by_id, record.transfer_id, record)
        self._put(self._transfers, record.transfer_id, transfer)
        self._put(self._balances, debit.account, debit)
        self._put(self._balances, credit.account, credit)
        if transfer.kind is TransferKind.PENDING:
            self._put(self._open, record.transfer_id, record)
        elif transfer.pending_id is not None:
            self._put(self._endings, transfer.pending_id, record)
            self._pop(self._open, transfer.pending_id)

    def _put(self, mapping: dict[_K, _V], key: _K, value: _V) -> None:
        if key in mapping:
            self._undo.append(partial(mapping.__setitem__, key, mapping[key]))
        else:
            self._undo.append(partial(mapping.pop, key))
        mapping[key] = value

    def _pop(self, mapping: dict[_K, _V], key: _K) -> None:
        self._undo.append(partial(mapping.__setitem__, key, mapping.pop(key)))

    # ----------------------------------------------------------------- the rules

    def _repeat_of_set(self, transfers: Sequence[Transfer]) -> tuple[TransferRecord, ...] | None:
        """The first records when ``transfers`` is exactly a set applied before, else None."""
        seqs = self._sets.get(transfers[0].transfer_id)
        if seqs is None or len(seqs) != len(transfers):
            return None
        records = tuple(self._records[seq] for seq in seqs)
        same = all(self._transfers[r.transfer_id] == t for r, t in zip(records, transfers, strict=True))
        return records if same else None

    def _refuse_used_id(self, transfer: Transfer, linked_set: str | None) -> None:
        first = self._by_id.get(transfer.transfer_id)
        if first is None:
            return
        earlier = self._transfers[transfer.transfer_id]
        if earlier != transfer:
            raise IdConflict(
                RefusalCode.ID_EXISTS_WITH_DIFFERENT_CONTENT,
                transfer.transfer_id,
                f"the id was used by record {first.seq} with other content ({_differences(earlier, transfer)})",
            )
        # A set's id is its first member's and is recorded in _sets only once the set is staged,
        # so a match with an unrecorded set id means an earlier member of the set being staged.
        if linked_set is not None and first.linked_set == linked_set and linked_set not in self._sets:
            reason = f"appears twice in this linked set (first as record {first.seq})"
        else:
            where = "alone" if first.linked_set is None else f"in the linked set {first.linked_set}"
            reason = f"already applied as record {first.seq} {where}; a linked set is repeated only as a whole"
        raise IdConflict(RefusalCode.ID_EXISTS_IN_OTHER_SET, transfer.transfer_id, reason)

    def _pending_amount(self, transfer: Transfer, now: datetime) -> int:
        """For a post, void or expiry, the pending amount it ends (after checking it may); else 0."""
        if transfer.pending_id is None:
            return 0
        pending = self._transfers.get(transfer.pending_id)
        if pending is None:
            raise PendingRefused(
                RefusalCode.PENDING_NOT_FOUND, transfer.transfer_id, f"no transfer {transfer.pending_id} to end"
            )
        if pending.kind is not TransferKind.PENDING:
            raise PendingRefused(
                RefusalCode.NOT_A_PENDING_TRANSFER,
                transfer.transfer_id,
                f"{transfer.pending_id} is a {pending.kind} transfer, not a pending one",
            )
        self._refuse_ended(transfer, pending)
        _refuse_by_time(transfer, pending, now)
        _refuse_other_pending_fields(transfer, pending)
        _refuse_other_pending_amount(transfer, pending)
        return pending.amount.amount_minor

    def _refuse_ended(self, transfer: Transfer, pending: Transfer) -> None:
        ending = self._endings.get(pending.transfer_id)
        if ending is None:
            return
        status = _STATUS_OF_ENDING[TransferKind(ending.kind)]
        code = {
            PendingStatus.POSTED: RefusalCode.PENDING_ALREADY_POSTED,
            PendingStatus.VOIDED: RefusalCode.PENDING_ALREADY_VOIDED,
            PendingStatus.EXPIRED: RefusalCode.PENDING_EXPIRED,
        }[status]
        raise PendingRefused(
            code,
            transfer.transfer_id,
            f"pending transfer {pending.transfer_id} was already {status} by {ending.transfer_id} "
            f"(record {ending.seq}, {_show(ending.amount_minor, ending.currency)}); it ends exactly once",
        )

    def _refuse_broken_flags(self, transfer: Transfer, after: AccountBalance) -> None:
        """Refuse when ``after`` (the account once ``transfer`` is applied) breaks its flags or bound."""
        problem = _flag_problem(after, self._flags[after.account.kind], max_balance_minor(after.account.currency))
        if problem is not None:
            code, text = problem
            amount = _show(transfer.amount.amount_minor, transfer.amount.currency)
            raise BalanceRefused(code, transfer.transfer_id, f"this {transfer.kind} of {amount} would leave {text}")

    # ----------------------------------------------------------------- replay

    def _replay_group(self, group: Sequence[TransferRecord]) -> None:
        first = group[0]
        try:
            transfers = [record.transfer for record in group]
            if first.linked_set is None:
                produced: tuple[TransferRecord, ...] = (self.apply(transfers[0], now=first.applied_at),)
            else:
                produced = self.apply_linked(transfers, now=first.applied_at)
        except (LedgerRefused, ValueError) as error:
            raise LedgerCorrupt(first.seq, f"does not replay: {error}") from error
        for stored, again in zip(group, produced, strict=True):
            if stored != again:
                raise LedgerCorrupt(stored.seq, f"replays as {again}, but the log holds {stored}")

    def _load(self, log: Sequence[TransferRecord]) -> None:
        """Take ``log`` as it is (no rule applied): balances and pending state from :class:`_Fold`."""
        fold = _Fold(log)
        self._unverified = True
        self._records = list(log)
        self._balances = dict(fold.balances)
        self._open = dict(fold.open)
        self._endings = dict(fold.endings)
        for record in log:
            self._by_id.setdefault(record.transfer_id, record)
            transfer = _readable(record)
            if transfer is not None:
                self._transfers.setdefault(record.transfer_id, transfer)
        for record in log:
            if record.linked_set is not None:
                self._sets[record.linked_set] = (*self._sets.get(record.linked_set, ()), record.seq)


# --------------------------------------------------------------------------- rules without state


def _refuse_invalid(transfer: Transfer, now: datetime) -> None:
    """The rules a transfer must keep whatever the ledger holds."""
    tid, amount = transfer.transfer_id, transfer.amount
    if transfer.debit_account == transfer.credit_account:
        raise InvalidTransfer(
            RefusalCode.ACCOUNTS_MUST_DIFFER, tid, f"debits and credits the same account {transfer.debit_account}"
        )
    for side, account in (("debit", transfer.debit_account), ("credit", transfer.credit_account)):
        if account.currency != amount.currency:
            raise InvalidTransfer(
                RefusalCode.CURRENCY_MISMATCH,
                tid,
                f"{_show(amount.amount_minor, amount.currency)} cannot move through the {side} account {account} "
                f"in {account.currency}",
            )
    if amount.amount_minor <= 0:
        raise InvalidTransfer(
            RefusalCode.AMOUNT_NOT_POSITIVE,
            tid,
            f"the amount must be positive, not {_show(amount.amount_minor, amount.currency)}",
        )
    if transfer.expires_at is not None and transfer.expires_at <= now:
        raise InvalidTransfer(
            RefusalCode.TIMEOUT_NOT_IN_FUTURE,
            tid,
            f"expires_at {transfer.expires_at.isoformat()} is not after now {now.isoformat()}",
        )


def _refuse_by_time(transfer: Transfer, pending: Transfer, now: datetime) -> None:
    """A post or void only before the pending's timeout; an expiry only from it on."""
    expires_at = pending.expires_at
    due = expires_at is not None and expires_at <= now
    if transfer.kind is TransferKind.EXPIRE_PENDING and not due:
        when = "it has no timeout" if expires_at is None else f"it expires at {expires_at.isoformat()}"
        raise PendingRefused(
            RefusalCode.PENDING_NOT_EXPIRED,
            transfer.transfer_id,
            f"pending transfer {pending.transfer_id} has not expired at {now.isoformat()}: {when}",
        )
    if transfer.kind is not TransferKind.EXPIRE_PENDING and due:
        assert expires_at is not None
        raise PendingRefused(
            RefusalCode.PENDING_EXPIRED,
            transfer.transfer_id,
            f"pending transfer {pending.transfer_id} expired at {expires_at.isoformat()}; "
            f"now is {now.isoformat()}, too late to {_verb(transfer.kind)} it",
        )


def _refuse_other_pending_fields(transfer: Transfer, pending: Transfer) -> None:
    """A post, void or expiry moves between the pending's accounts, for its order, with its code."""
    for name in ("debit_account", "credit_account", "order_id", "code"):
        ours, theirs = getattr(transfer, name), getattr(pending, name)
        if ours != theirs:
            raise PendingRefused(
                RefusalCode.PENDING_TRANSFER_DIFFERS,
                transfer.transfer_id,
                f"its {name} {ours} differs from pending transfer {pending.transfer_id}'s {theirs}",
            )


def _refuse_other_pending_amount(transfer: Transfer, pending: Transfer) -> None:
    ours, reserved = transfer.amount.amount_minor, pending.amount.amount_minor
    currency = pending.amount.currency
    if transfer.kind is TransferKind.POST_PENDING and ours > reserved:
        raise PendingRefused(
            RefusalCode.EXCEEDS_PENDING_AMOUNT,
            transfer.transfer_id,
            f"posts {_show(ours, currency)} but pending transfer {pending.transfer_id} reserved only "
            f"{_show(reserved, currency)}: {_show(ours - reserved, currency)} more than it holds",
        )
    if transfer.kind is not TransferKind.POST_PENDING and ours != reserved:
        raise PendingRefused(
            RefusalCode.AMOUNT_DIFFERS_FROM_PENDING,
            transfer.transfer_id,
            f"a {transfer.kind} releases all of pending transfer {pending.transfer_id}, "
            f"{_show(reserved, currency)}, not {_show(ours, currency)}",
        )


def _phase_deltas(kind: TransferKind, amount: int, pending_amount: int) -> tuple[int, int]:
    """``(pending, posted)`` change of the debit account's debits and, alike, the credit account's credits.

    Both accounts move by the same figures: that is what keeps every currency's debits equal to
    its credits. Ending a pending transfer always releases all it reserved (``pending_amount``),
    and a post then posts its own amount.
    """
    if kind is TransferKind.SINGLE_PHASE:
        return 0, amount
    if kind is TransferKind.PENDING:
        return amount, 0
    if kind is TransferKind.POST_PENDING:
        return -pending_amount, amount
    return -pending_amount, 0


def _flag_problem(balance: AccountBalance, flags: AccountFlags, bound: int) -> tuple[RefusalCode, str] | None:
    """What is wrong with ``balance`` under ``flags`` and the balance ``bound``, with figures; None if nothing."""
    currency = balance.account.currency
    account = balance.account
    if balance.debits > bound:
        return (
            RefusalCode.OVERFLOWS_DEBITS,
            f"{account} with debits {_show(balance.debits, currency)} above the bound {_show(bound, currency)}",
        )
    if balance.credits > bound:
        return (
            RefusalCode.OVERFLOWS_CREDITS,
            f"{account} with credits {_show(balance.credits, currency)} above the bound {_show(bound, currency)}",
        )
    if flags.debits_must_not_exceed_credits and balance.debits > balance.credits_posted:
        return RefusalCode.EXCEEDS_CREDITS, (
            f"{account} (debits_must_not_exceed_credits) with debits {_show(balance.debits_posted, currency)} posted "
            f"+ {_show(balance.debits_pending, currency)} pending = {_show(balance.debits, currency)} against "
            f"credits posted {_show(balance.credits_posted, currency)}: "
            f"{_show(balance.debits - balance.credits_posted, currency)} over"
        )
    if flags.credits_must_not_exceed_debits and balance.credits > balance.debits_posted:
        return RefusalCode.EXCEEDS_DEBITS, (
            f"{account} (credits_must_not_exceed_debits) with credits {_show(balance.credits_posted, currency)} posted "
            f"+ {_show(balance.credits_pending, currency)} pending = {_show(balance.credits, currency)} against "
            f"debits posted {_show(balance.debits_posted, currency)}: "
            f"{_show(balance.credits - balance.debits_posted, currency)} over"
        )
    return None


# --------------------------------------------------------------------------- recomputing from the log


class _Fold:
    """Balances and pending state recomputed from a log with no rule applied, and what is wrong with it.

    Independent of :class:`Ledger`'s incremental state (only :func:`_phase_deltas` is shared), so
    it can check that state and read a damaged log without raising.
    """

    def __init__(self, log: Sequence[TransferRecord]) -> None:
        self.balances: dict[AccountId, AccountBalance] = {}
        self.open: dict[str, TransferRecord] = {}
        self.endings: dict[str, TransferRecord] = {}
        self.breaks: list[BooksBreak] = []
        self._seen: dict[str, TransferRecord] = {}
        for position, record in enumerate(log):
            self._absorb(position, record)

    def _absorb(self, position: int, record: TransferRecord) -> None:
        subject = f"record {record.seq} ({record.transfer_id})"
        if record.seq != position:
            self._break(BreakCode.LOG_SEQUENCE, subject, f"is at position {position} of the log")
        if record.transfer_id in self._seen:
            self._break(
                BreakCode.DUPLICATE_ID, subject, f"reuses the id of record {self._seen[record.transfer_id].seq}"
            )
        self._seen.setdefault(record.transfer_id, record)
        accounts = self._accounts(subject, record)
        if accounts is None:
            return
        self._check_record(subject, record, *accounts)
        pending_amount = self._pending_amount(subject, record)
        pending, posted = _phase_deltas(TransferKind(record.kind), record.amount_minor, pending_amount)
        debit, credit = accounts
        self.balances[debit] = self.balances.get(debit, AccountBalance(debit)).moved("debit", pending, posted)
        self.balances[credit] = self.balances.get(credit, AccountBalance(credit)).moved("credit", pending, posted)

    def _accounts(self, subject: str, record: TransferRecord) -> tuple[AccountId, AccountId] | None:
        try:
            TransferKind(record.kind)
            return AccountId.parse(record.debit_account), AccountId.parse(record.credit_account)
        except ValueError as error:
            self._break(BreakCode.UNREADABLE_RECORD, subject, f"{error}; left out of every balance")
            return None

    def _check_record(self, subject: str, record: TransferRecord, debit: AccountId, credit: AccountId) -> None:
        if record.amount_minor <= 0:
            self._break(BreakCode.INVALID_RECORD, subject, f"amount {record.amount_minor} is not positive")
        if debit == credit:
            self._break(BreakCode.INVALID_RECORD, subject, f"debits and credits the same account {debit}")
        if not record.currency == debit.currency == credit.currency:
            self._break(
                BreakCode.INVALID_RECORD,
                subject,
                f"moves {record.currency} from {debit} to {credit}: one currency on both sides and the amount",
            )

    def _pending_amount(self, subject: str, record: TransferRecord) -> int:
        """What an ending releases: its pending's amount (its own when that cannot be found)."""
        if record.kind not in _ENDINGS:
            if record.kind == TransferKind.PENDING:
                self.open[record.transfer_id] = record
            return 0
        pending = self._seen.get(record.pending_id or "")
        if pending is None or pending.kind != TransferKind.PENDING or pending.seq >= record.seq:
            self._break(BreakCode.PENDING_REFERENCE, subject, f"ends {record.pending_id}, no earlier pending transfer")
            return record.amount_minor
        if pending.transfer_id in self.endings:
            earlier = self.endings[pending.transfer_id]
            self._break(
                BreakCode.PENDING_REFERENCE, subject, f"ends {pending.transfer_id} again after record {earlier.seq}"
            )
        self._check_ending_amount(subject, record, pending)
        self.endings.setdefault(pending.transfer_id, record)
        self.open.pop(pending.transfer_id, None)
        return pending.amount_minor

    def _check_ending_amount(self, subject: str, record: TransferRecord, pending: TransferRecord) -> None:
        posts = record.kind == TransferKind.POST_PENDING
        if (record.amount_minor > pending.amount_minor) if posts else (record.amount_minor != pending.amount_minor):
            self._break(
                BreakCode.PENDING_REFERENCE,
                subject,
                f"{record.kind} of {record.amount_minor} against the {pending.amount_minor} pending in {pending.transfer_id}",
            )

    def _break(self, code: BreakCode, subject: str, detail: str) -> None:
        self.breaks.append(BooksBreak(code, subject, detail))


def _compare_balances(
    held: Mapping[AccountId, AccountBalance], derived: Mapping[AccountId, AccountBalance], code: BreakCode
) -> Iterator[BooksBreak]:
    for account in sorted(held.keys() | derived.keys()):
        ours = held.get(account) or AccountBalance(account)
        expected = derived.get(account) or AccountBalance(account)
        if ours != expected:
            yield BooksBreak(code, str(account), f"holds {_totals(ours)}, the log gives {_totals(expected)}")


def _unbalanced_currencies(balances: Iterable[AccountBalance]) -> Iterator[BooksBreak]:
    totals: dict[str, list[int]] = {}
    for balance in balances:
        sums = totals.setdefault(balance.account.currency, [0, 0, 0, 0])
        sums[0] += balance.debits_pending
        sums[1] += balance.credits_pending
        sums[2] += balance.debits_posted
        sums[3] += balance.credits_posted
    for currency, (dp, cp, dpo, cpo) in sorted(totals.items()):
        for phase, debit_total, credit_total in (("pending", dp, cp), ("posted", dpo, cpo)):
            if debit_total != credit_total:
                yield BooksBreak(
                    BreakCode.CURRENCY_UNBALANCED,
                    currency,
                    f"{phase} debits {_show(debit_total, currency)} != {phase} credits {_show(credit_total, currency)}",
                )


def _broken_flags(
    balances: Iterable[AccountBalance], flags: Mapping[AccountKind, AccountFlags]
) -> Iterator[BooksBreak]:
    for balance in sorted(balances, key=lambda b: b.account):
        account = balance.account
        problem = _flag_problem(balance, flags[account.kind], max_balance_minor(account.currency))
        if problem is not None:
            yield BooksBreak(BreakCode.FLAG_BROKEN, str(account), f"{problem[0]}: {problem[1]}")


def _negative_pending(balances: Iterable[AccountBalance]) -> Iterator[BooksBreak]:
    """Pending figures only ever hold what is reserved: below zero, something was released twice."""
    for balance in sorted(balances, key=lambda b: b.account):
        if balance.debits_pending < 0 or balance.credits_pending < 0:
            yield BooksBreak(
                BreakCode.NEGATIVE_PENDING,
                str(balance.account),
                f"debits pending {_show(balance.debits_pending, balance.account.currency)}, "
                f"credits pending {_show(balance.credits_pending, balance.account.currency)}",
            )


def _past_timeout(open_pending: Iterable[TransferRecord], now: datetime) -> Iterator[BooksBreak]:
    for record in open_pending:
        if _is_due(record, now):
            assert record.expires_at is not None
            yield BooksBreak(
                BreakCode.PENDING_PAST_TIMEOUT,
                f"record {record.seq} ({record.transfer_id})",
                f"still pending at {now.isoformat()}, its timeout was {record.expires_at.isoformat()}",
            )


def _linked_groups(log: Sequence[TransferRecord]) -> Iterator[Sequence[TransferRecord]]:
    """The log cut into what was applied together: single records and runs of one linked set."""
    start = 0
    for index in range(1, len(log) + 1):
        if index == len(log) or log[index].linked_set is None or log[index].linked_set != log[start].linked_set:
            yield log[start:index]
            start = index


def _readable(record: TransferRecord) -> Transfer | None:
    try:
        return record.transfer
    except ValueError:
        return None  # _Fold reports it as unreadable


# --------------------------------------------------------------------------- helpers


def _is_due(record: TransferRecord, now: datetime) -> bool:
    return record.expires_at is not None and record.expires_at <= now


def _timeout_order(record: TransferRecord) -> tuple[datetime, int]:
    assert record.expires_at is not None
    return record.expires_at, record.seq


def _verb(kind: TransferKind) -> str:
    return "post" if kind is TransferKind.POST_PENDING else "void"


def _differences(earlier: Transfer, later: Transfer) -> str:
    names = (field.name for field in fields(Transfer))
    return "; ".join(
        f"{name} {getattr(earlier, name)} then {getattr(later, name)}"
        for name in names
        if getattr(earlier, name) != getattr(later, name)
    )


def _totals(balance: AccountBalance) -> str:
    return (
        f"debits {balance.debits_pending} pending/{balance.debits_posted} posted, "
        f"credits {balance.credits_pending} pending/{balance.credits_posted} posted"
    )


def _show(minor: int, currency: str) -> str:
    """``25.00 USD``: minor units in major units with the currency's digits (negative allowed)."""
    return f"{Decimal(minor).scaleb(-minor_unit_exponent(currency))} {currency}"


def _require_aware(moment: datetime, name: str) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime, not naive {moment.isoformat()}")
