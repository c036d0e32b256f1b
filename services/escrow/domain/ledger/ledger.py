"""E1 the :class:`Ledger`: balances and the append-only log they derive from, changed all or nothing."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import fields
from datetime import datetime
from functools import partial
from types import MappingProxyType
from typing import TypeVar

from contracts.money import max_balance_minor
from services.escrow.domain.ledger._text import is_due, require_aware, show, timeout_order
from services.escrow.domain.ledger.accounts import (
    ACCOUNT_FLAGS,
    AccountBalance,
    AccountFlags,
    AccountId,
    AccountKind,
    LedgerAccount,
)
from services.escrow.domain.ledger.books import (
    BooksReport,
    BreakCode,
    Fold,
    broken_flags,
    compare_balances,
    linked_groups,
    negative_pending,
    past_timeout,
    readable,
    unbalanced_currencies,
)
from services.escrow.domain.ledger.errors import (
    BalanceRefused,
    IdConflict,
    LedgerCorrupt,
    LedgerRefused,
    LinkedSetRefused,
    PendingRefused,
    RefusalCode,
)
from services.escrow.domain.ledger.rules import (
    flag_problem,
    phase_deltas,
    refuse_by_time,
    refuse_invalid,
    refuse_other_pending_amount,
    refuse_other_pending_fields,
)
from services.escrow.domain.ledger.transfers import (
    STATUS_OF_ENDING,
    PendingStatus,
    Transfer,
    TransferKind,
    TransferRecord,
)

_K = TypeVar("_K")
_V = TypeVar("_V")
_R = TypeVar("_R")


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
        self._view: frozenset[AccountId] | None = None  # from_state: the only accounts it may move

    @classmethod
    def from_state(
        cls,
        balances: Iterable[AccountBalance],
        open_pending: Iterable[TransferRecord] = (),
        *,
        flags: Mapping[AccountKind, AccountFlags] = ACCOUNT_FLAGS,
    ) -> Ledger:
        """A view of part of the books, to apply transfers through every rule without the whole log.

        ``balances`` are the stored totals of every account the transfers may touch (an account not
        stored yet is given as a zero :class:`AccountBalance`), ``open_pending`` the records of the
        pending transfers they may post or void. Moving any other account raises ValueError (the
        caller forgot to load it: a bug, never a refusal). :attr:`records` then holds only what was
        applied through the view, numbered from 0; the store gives them their place in the log.
        Ids the view was not given are unknown to it, so reusing one is the store's to catch (a
        unique transfer id). :meth:`check` is for a whole log, not for a view.
        """
        ledger = cls(flags)
        ledger._balances = {balance.account: balance for balance in balances}
        ledger._view = frozenset(ledger._balances)
        for record in open_pending:
            transfer = record.transfer
            if transfer.kind is not TransferKind.PENDING:
                raise ValueError(f"record {record.transfer_id} is {transfer.kind}, not an open pending transfer")
            for account in (transfer.debit_account, transfer.credit_account):
                if account not in ledger._view:
                    raise ValueError(f"pending transfer {record.transfer_id} moves {account}, which the view lacks")
            ledger._by_id[record.transfer_id] = record
            ledger._transfers[record.transfer_id] = transfer
            ledger._open[record.transfer_id] = record
        ledger._require_pending_covered()
        return ledger

    def _require_pending_covered(self) -> None:
        """A view's open pending transfers must be within its accounts' pending figures, or
        ending one would take a pending figure below zero (stored state that disagrees: damage)."""
        reserved: dict[tuple[AccountId, str], int] = {}
        for record in self._open.values():
            transfer = self._transfers[record.transfer_id]
            for key in ((transfer.debit_account, "debit"), (transfer.credit_account, "credit")):
                reserved[key] = reserved.get(key, 0) + transfer.amount.amount_minor
        for (account, side), amount in reserved.items():
            balance = self._balances[account]
            held = balance.debits_pending if side == "debit" else balance.credits_pending
            if amount > held:
                raise ValueError(
                    f"{account} has {held} {side}s pending, less than its open pending transfers' {amount}"
                )

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
        return PendingStatus.PENDING if ending is None else STATUS_OF_ENDING[TransferKind(ending.kind)]

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
        due = sorted((record for record in self._open.values() if is_due(record, now)), key=timeout_order)
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
        fold = Fold(self._records)
        breaks = list(fold.breaks)
        breaks += compare_balances(self._balances, fold.balances, BreakCode.BALANCE_MISMATCH)
        if balances is not None:
            breaks += compare_balances(balances, fold.balances, BreakCode.STORED_BALANCE_MISMATCH)
        breaks += unbalanced_currencies(fold.balances.values())
        breaks += broken_flags(fold.balances.values(), self._flags)
        breaks += negative_pending(fold.balances.values())
        if now is not None:
            require_aware(now, "now")
            breaks += past_timeout(fold.open.values(), now)
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
            for group in linked_groups(log):
                ledger._replay_group(group)
        else:
            ledger._load(log)
        return ledger

    # ----------------------------------------------------------------- staging (all or nothing)

    def _require_writable(self, now: datetime) -> None:
        require_aware(now, "now")
        if self._unverified:
            # Its state came from an unchecked log: new transfers checked against it would mean nothing.
            raise RuntimeError("a ledger replayed with verify=False is for check() only; replay it verified to apply")

    def _require_in_view(self, transfer: Transfer) -> None:
        if self._view is None:
            return
        for account in (transfer.debit_account, transfer.credit_account):
            if account not in self._view:
                raise ValueError(
                    f"transfer {transfer.transfer_id} moves {account}, which this ledger view was not given"
                )

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
        self._require_in_view(transfer)
        self._refuse_used_id(transfer, linked_set)
        refuse_invalid(transfer, now)
        pending_amount = self._pending_amount(transfer, now)
        pending, posted = phase_deltas(transfer.kind, transfer.amount.amount_minor, pending_amount)
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
                f"the id was used by record {first.seq} with other content ({differences(earlier, transfer)})",
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
        refuse_by_time(transfer, pending, now)
        refuse_other_pending_fields(transfer, pending)
        refuse_other_pending_amount(transfer, pending)
        return pending.amount.amount_minor

    def _refuse_ended(self, transfer: Transfer, pending: Transfer) -> None:
        ending = self._endings.get(pending.transfer_id)
        if ending is None:
            return
        status = STATUS_OF_ENDING[TransferKind(ending.kind)]
        code = {
            PendingStatus.POSTED: RefusalCode.PENDING_ALREADY_POSTED,
            PendingStatus.VOIDED: RefusalCode.PENDING_ALREADY_VOIDED,
            PendingStatus.EXPIRED: RefusalCode.PENDING_EXPIRED,
        }[status]
        raise PendingRefused(
            code,
            transfer.transfer_id,
            f"pending transfer {pending.transfer_id} was already {status} by {ending.transfer_id} "
            f"(record {ending.seq}, {show(ending.amount_minor, ending.currency)}); it ends exactly once",
        )

    def _refuse_broken_flags(self, transfer: Transfer, after: AccountBalance) -> None:
        """Refuse when ``after`` (the account once ``transfer`` is applied) breaks its flags or bound."""
        problem = flag_problem(after, self._flags[after.account.kind], max_balance_minor(after.account.currency))
        if problem is not None:
            code, text = problem
            amount = show(transfer.amount.amount_minor, transfer.amount.currency)
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
        """Take ``log`` as it is (no rule applied): balances and pending state from :class:`Fold`."""
        fold = Fold(log)
        self._unverified = True
        self._records = list(log)
        self._balances = dict(fold.balances)
        self._open = dict(fold.open)
        self._endings = dict(fold.endings)
        for record in log:
            self._by_id.setdefault(record.transfer_id, record)
            transfer = readable(record)
            if transfer is not None:
                self._transfers.setdefault(record.transfer_id, transfer)
        for record in log:
            if record.linked_set is not None:
                self._sets[record.linked_set] = (*self._sets.get(record.linked_set, ()), record.seq)


def differences(earlier: Transfer, later: Transfer) -> str:
    names = (field.name for field in fields(Transfer))
    return "; ".join(
        f"{name} {getattr(earlier, name)} then {getattr(later, name)}"
        for name in names
        if getattr(earlier, name) != getattr(later, name)
    )
