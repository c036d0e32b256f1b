"""E1 the books check: every balance recomputed from the log, and every break found in it (the G1 audit's core)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from contracts.money import max_balance_minor
from services.escrow.domain.ledger._text import is_due, show, totals
from services.escrow.domain.ledger.accounts import AccountBalance, AccountFlags, AccountId, AccountKind
from services.escrow.domain.ledger.rules import flag_problem, phase_deltas
from services.escrow.domain.ledger.transfers import ENDINGS, Transfer, TransferKind, TransferRecord


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


class Fold:
    """Balances and pending state recomputed from a log with no rule applied, and what is wrong with it.

    Independent of :class:`Ledger`'s incremental state (only :func:`phase_deltas` is shared), so
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
        pending, posted = phase_deltas(TransferKind(record.kind), record.amount_minor, pending_amount)
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
        if record.kind not in ENDINGS:
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


def compare_balances(
    held: Mapping[AccountId, AccountBalance], derived: Mapping[AccountId, AccountBalance], code: BreakCode
) -> Iterator[BooksBreak]:
    for account in sorted(held.keys() | derived.keys()):
        ours = held.get(account) or AccountBalance(account)
        expected = derived.get(account) or AccountBalance(account)
        if ours != expected:
            yield BooksBreak(code, str(account), f"holds {totals(ours)}, the log gives {totals(expected)}")


def unbalanced_currencies(balances: Iterable[AccountBalance]) -> Iterator[BooksBreak]:
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
                    f"{phase} debits {show(debit_total, currency)} != {phase} credits {show(credit_total, currency)}",
                )


def broken_flags(balances: Iterable[AccountBalance], flags: Mapping[AccountKind, AccountFlags]) -> Iterator[BooksBreak]:
    for balance in sorted(balances, key=lambda b: b.account):
        account = balance.account
        problem = flag_problem(balance, flags[account.kind], max_balance_minor(account.currency))
        if problem is not None:
            yield BooksBreak(BreakCode.FLAG_BROKEN, str(account), f"{problem[0]}: {problem[1]}")


def negative_pending(balances: Iterable[AccountBalance]) -> Iterator[BooksBreak]:
    """Pending figures only ever hold what is reserved: below zero, something was released twice."""
    for balance in sorted(balances, key=lambda b: b.account):
        if balance.debits_pending < 0 or balance.credits_pending < 0:
            yield BooksBreak(
                BreakCode.NEGATIVE_PENDING,
                str(balance.account),
                f"debits pending {show(balance.debits_pending, balance.account.currency)}, "
                f"credits pending {show(balance.credits_pending, balance.account.currency)}",
            )


def past_timeout(open_pending: Iterable[TransferRecord], now: datetime) -> Iterator[BooksBreak]:
    for record in open_pending:
        if is_due(record, now):
            assert record.expires_at is not None
            yield BooksBreak(
                BreakCode.PENDING_PAST_TIMEOUT,
                f"record {record.seq} ({record.transfer_id})",
                f"still pending at {now.isoformat()}, its timeout was {record.expires_at.isoformat()}",
            )


def linked_groups(log: Sequence[TransferRecord]) -> Iterator[Sequence[TransferRecord]]:
    """The log cut into what was applied together: single records and runs of one linked set."""
    start = 0
    for index in range(1, len(log) + 1):
        if index == len(log) or log[index].linked_set is None or log[index].linked_set != log[start].linked_set:
            yield log[start:index]
            start = index


def readable(record: TransferRecord) -> Transfer | None:
    try:
        return record.transfer
    except ValueError:
        return None  # Fold reports it as unreadable
