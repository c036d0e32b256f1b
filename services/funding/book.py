"""The funding network's own book (SPEC P4, P6, G1): its charges and refunds, in the vault's SQLite file.

Keyed by the caller's request id (its idempotency key), so a repeat finds what the first attempt
applied. Rows hold tokens, never card numbers. Beside them the simulator keeps what its faults
need to be reproducible across restarts: how often each request id was attempted, and which
tokens' one-shot behaviours have fired.

Synchronous (stdlib ``sqlite3``) behind a lock, like the vault: the HTTP layer calls it from a
worker thread.
"""

from __future__ import annotations

import secrets
import sqlite3
import string
import threading
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Self

from contracts.money import Money
from services.funding.cards import Behaviour
from services.funding.faults import NetworkDecline, Operation

ID_LENGTH = 24
_ID_ALPHABET = string.ascii_letters + string.digits

_SCHEMA = """
CREATE TABLE IF NOT EXISTS charges (
    request_id     TEXT PRIMARY KEY,
    charge_id      TEXT UNIQUE,
    token          TEXT NOT NULL,
    amount_minor   INTEGER NOT NULL CHECK (amount_minor > 0),
    currency       TEXT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('captured', 'declined')),
    decline_reason TEXT,
    created_at     TEXT NOT NULL,
    CHECK ((status = 'captured') = (charge_id IS NOT NULL AND decline_reason IS NULL))
) STRICT;
CREATE TABLE IF NOT EXISTS refunds (
    request_id           TEXT PRIMARY KEY,
    refund_id            TEXT NOT NULL UNIQUE,
    charge_id            TEXT NOT NULL REFERENCES charges (charge_id),
    token                TEXT NOT NULL,
    amount_minor         INTEGER NOT NULL CHECK (amount_minor > 0),
    currency             TEXT NOT NULL,
    refunded_total_minor INTEGER NOT NULL,
    remaining_minor      INTEGER NOT NULL CHECK (remaining_minor >= 0),
    status               TEXT NOT NULL CHECK (status = 'refunded'),
    created_at           TEXT NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS refunds_by_charge ON refunds (charge_id);
CREATE TABLE IF NOT EXISTS request_attempts (
    operation  TEXT NOT NULL,
    request_id TEXT NOT NULL,
    attempts   INTEGER NOT NULL,
    first_at   TEXT NOT NULL,
    PRIMARY KEY (operation, request_id)
) STRICT;
CREATE TABLE IF NOT EXISTS first_requests (
    token      TEXT PRIMARY KEY,
    request_id TEXT NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS spent_one_shots (
    token     TEXT PRIMARY KEY,
    behaviour TEXT NOT NULL,
    spent_at  TEXT NOT NULL
) STRICT;
"""
_CHARGE_COLUMNS = "request_id, charge_id, token, amount_minor, currency, status, decline_reason, created_at"
_REFUND_COLUMNS = (
    "request_id, refund_id, charge_id, token, amount_minor, currency, refunded_total_minor, remaining_minor, created_at"
)


def new_id(prefix: str) -> str:
    return prefix + "".join(secrets.choice(_ID_ALPHABET) for _ in range(ID_LENGTH))


class ChargeStatus(StrEnum):
    CAPTURED = "captured"
    DECLINED = "declined"


@dataclass(frozen=True, slots=True)
class ChargeRecord:
    """A charge the network applied: captured (with a charge id) or declined (with a reason)."""

    request_id: str
    token: str
    amount: Money
    status: ChargeStatus
    charge_id: str | None
    decline_reason: NetworkDecline | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class RefundRecord:
    """A refund the network applied, with the charge's totals as they stood right after it."""

    request_id: str
    refund_id: str
    charge_id: str
    token: str
    amount: Money
    refunded_total: Money
    remaining: Money
    created_at: datetime


class RefundExceedsRemaining(ValueError):
    """A refund asks for more than what remains of its charge."""

    def __init__(self, charge_id: str, amount: Money, remaining: Money) -> None:
        super().__init__(f"a refund of {amount} exceeds the {remaining} that remains of charge {charge_id}")
        self.remaining = remaining


@dataclass(frozen=True, slots=True)
class CurrencyTotals:
    currency: str
    captured_minor: int = 0
    captures: int = 0
    refunded_minor: int = 0
    refunds: int = 0
    declines: int = 0


class NetworkBook:
    """The charge and refund tables over one SQLite file; :meth:`open` it, close it as a context manager."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: Path) -> Self:
        path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(path, check_same_thread=False, timeout=10.0)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")  # WAL: durable across a crash of the process, fast enough
        connection.execute("PRAGMA foreign_keys=ON")
        connection.executescript(_SCHEMA)
        return cls(connection)

    def close(self) -> None:
        with self._lock:
            self._connection.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    # --- what the faults need -----------------------------------------------------------------

    def note_attempt(self, operation: Operation, request_id: str, now: datetime) -> int:
        """Count an attempt of ``request_id``; 1 for its first."""
        with self._lock, self._connection:
            row = self._connection.execute(
                "INSERT INTO request_attempts (operation, request_id, attempts, first_at) VALUES (?, ?, 1, ?) "
                "ON CONFLICT (operation, request_id) DO UPDATE SET attempts = attempts + 1 RETURNING attempts",
                (operation.value, request_id, now.isoformat()),
            ).fetchone()
        return _int(row[0])

    def one_shot_spent(self, token: str) -> bool:
        with self._lock:
            row = self._connection.execute("SELECT 1 FROM spent_one_shots WHERE token = ?", (token,)).fetchone()
        return row is not None

    def first_request(self, token: str, request_id: str) -> str:
        """The first charge request id that named ``token`` (this one, if none did before)."""
        with self._lock, self._connection:
            self._connection.execute(
                "INSERT OR IGNORE INTO first_requests (token, request_id) VALUES (?, ?)", (token, request_id)
            )
            row = self._connection.execute("SELECT request_id FROM first_requests WHERE token = ?", (token,)).fetchone()
        return str(row[0])

    def spend_one_shot(self, token: str, behaviour: Behaviour, now: datetime) -> None:
        with self._lock, self._connection:
            self._connection.execute(
                "INSERT OR IGNORE INTO spent_one_shots (token, behaviour, spent_at) VALUES (?, ?, ?)",
                (token, behaviour.value, now.isoformat()),
            )

    # --- charges ------------------------------------------------------------------------------

    def charge_by_request(self, request_id: str) -> ChargeRecord | None:
        return self._charge_where("request_id", request_id)

    def charge_by_id(self, charge_id: str) -> ChargeRecord | None:
        return self._charge_where("charge_id", charge_id)

    def _charge_where(self, column: str, value: str) -> ChargeRecord | None:
        with self._lock:
            row = self._connection.execute(
                f"SELECT {_CHARGE_COLUMNS} FROM charges WHERE {column} = ?",  # noqa: S608 (our own column names)
                (value,),
            ).fetchone()
        return _charge(row) if row is not None else None

    def record_charge(
        self,
        request_id: str,
        token: str,
        amount: Money,
        now: datetime,
        decline_reason: NetworkDecline | None = None,
    ) -> ChargeRecord:
        """Store a captured charge (``decline_reason`` None) or a declined one."""
        record = ChargeRecord(
            request_id=request_id,
            token=token,
            amount=amount,
            status=ChargeStatus.CAPTURED if decline_reason is None else ChargeStatus.DECLINED,
            charge_id=new_id("ch_") if decline_reason is None else None,
            decline_reason=decline_reason,
            created_at=now,
        )
        with self._lock, self._connection:
            self._connection.execute(
                f"INSERT INTO charges ({_CHARGE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",  # noqa: S608 (our own column names)
                (
                    record.request_id,
                    record.charge_id,
                    record.token,
                    amount.amount_minor,
                    amount.currency,
                    record.status.value,
                    decline_reason.value if decline_reason is not None else None,
                    now.isoformat(),
                ),
            )
        return record

    # --- refunds ------------------------------------------------------------------------------

    def refund_by_request(self, request_id: str) -> RefundRecord | None:
        with self._lock:
            row = self._connection.execute(
                f"SELECT {_REFUND_COLUMNS} FROM refunds WHERE request_id = ?",  # noqa: S608 (our own column names)
                (request_id,),
            ).fetchone()
        return _refund(row) if row is not None else None

    def remaining(self, charge: ChargeRecord) -> Money:
        """What may still be refunded of a captured charge."""
        with self._lock:
            return charge.amount.model_copy(
                update={"amount_minor": charge.amount.amount_minor - self._refunded_minor(charge)}
            )

    def record_refund(self, request_id: str, charge: ChargeRecord, amount: Money, now: datetime) -> RefundRecord:
        """Refund ``amount`` of a captured charge, or :class:`RefundExceedsRemaining`; checked and
        stored in one transaction."""
        assert charge.charge_id is not None, "only a captured charge is refunded"
        assert amount.currency == charge.amount.currency, "the caller checks the currency"
        with self._lock, self._connection:
            refunded = self._refunded_minor(charge)
            remaining = charge.amount.amount_minor - refunded
            if amount.amount_minor > remaining:
                raise RefundExceedsRemaining(charge.charge_id, amount, _same_currency(charge.amount, remaining))
            record = RefundRecord(
                request_id=request_id,
                refund_id=new_id("re_"),
                charge_id=charge.charge_id,
                token=charge.token,
                amount=amount,
                refunded_total=_same_currency(amount, refunded + amount.amount_minor),
                remaining=_same_currency(amount, remaining - amount.amount_minor),
                created_at=now,
            )
            self._connection.execute(
                f"INSERT INTO refunds ({_REFUND_COLUMNS}, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'refunded')",  # noqa: S608 (our own column names)
                (
                    record.request_id,
                    record.refund_id,
                    record.charge_id,
                    record.token,
                    amount.amount_minor,
                    amount.currency,
                    record.refunded_total.amount_minor,
                    record.remaining.amount_minor,
                    now.isoformat(),
                ),
            )
        return record

    def _refunded_minor(self, charge: ChargeRecord) -> int:
        row = self._connection.execute(
            "SELECT COALESCE(SUM(amount_minor), 0) FROM refunds WHERE charge_id = ?", (charge.charge_id,)
        ).fetchone()
        return _int(row[0])

    # --- the audit's view ---------------------------------------------------------------------

    def ledger(self, token: str | None = None) -> list[CurrencyTotals]:
        """Captured and refunded totals per currency (of one token, if given), sorted by currency."""
        args = (token, token)
        with self._lock:
            charges = self._connection.execute(
                "SELECT currency, "
                "COALESCE(SUM(CASE WHEN status = 'captured' THEN amount_minor END), 0), "
                "COUNT(CASE WHEN status = 'captured' THEN 1 END), "
                "COUNT(CASE WHEN status = 'declined' THEN 1 END) "
                "FROM charges WHERE (? IS NULL OR token = ?) GROUP BY currency",
                args,
            ).fetchall()
            refunds = self._connection.execute(
                "SELECT currency, SUM(amount_minor), COUNT(*) FROM refunds "
                "WHERE (? IS NULL OR token = ?) GROUP BY currency",
                args,
            ).fetchall()
        totals: dict[str, CurrencyTotals] = {}
        for currency, captured, captures, declines in charges:
            totals[currency] = CurrencyTotals(currency, _int(captured), _int(captures), declines=_int(declines))
        for currency, refunded, count in refunds:
            base = totals.get(currency, CurrencyTotals(currency))
            totals[currency] = CurrencyTotals(
                currency, base.captured_minor, base.captures, _int(refunded), _int(count), base.declines
            )
        return [totals[currency] for currency in sorted(totals)]


def _same_currency(like: Money, amount_minor: int) -> Money:
    return like.model_copy(update={"amount_minor": amount_minor})  # at most the charge's amount: within bounds


def _charge(row: tuple[object, ...]) -> ChargeRecord:
    request_id, charge_id, token, amount_minor, currency, status, decline_reason, created_at = row
    return ChargeRecord(
        request_id=_text(request_id),
        token=_text(token),
        amount=Money(amount_minor=_int(amount_minor), currency=_text(currency)),
        status=ChargeStatus(_text(status)),
        charge_id=_text(charge_id) if charge_id is not None else None,
        decline_reason=NetworkDecline(_text(decline_reason)) if decline_reason is not None else None,
        created_at=datetime.fromisoformat(_text(created_at)),
    )


def _refund(row: tuple[object, ...]) -> RefundRecord:
    request_id, refund_id, charge_id, token, amount_minor, currency, refunded_total, remaining, created_at = row
    amount = Money(amount_minor=_int(amount_minor), currency=_text(currency))
    return RefundRecord(
        request_id=_text(request_id),
        refund_id=_text(refund_id),
        charge_id=_text(charge_id),
        token=_text(token),
        amount=amount,
        refunded_total=_same_currency(amount, _int(refunded_total)),
        remaining=_same_currency(amount, _int(remaining)),
        created_at=datetime.fromisoformat(_text(created_at)),
    )


def _text(value: object) -> str:
    assert isinstance(value, str), "the STRICT table holds TEXT here"
    return value


def _int(value: object) -> int:
    assert isinstance(value, int), "the STRICT table holds INTEGER here"
    return value
