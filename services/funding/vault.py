"""The card vault's storage (SPEC A4): one SQLite table of tokens, never a card number or IBAN.

A token row keeps what may be shown (brand, last four, expiry, country), the scripted
behaviour of the simulated issuer, and a fingerprint: HMAC-SHA256 of the number under a key
only the vault holds, so the same card can be recognised without being stored. Like Stripe,
tokenising the same card twice gives two tokens with one fingerprint.

The connection is synchronous (stdlib ``sqlite3``); the HTTP layer calls it from a worker
thread, so every operation holds a lock.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
import string
import threading
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Self

from contracts.funding_sources import CardBrand
from services.funding.cards import (
    Behaviour,
    ScriptedCard,
    ScriptedCardsInvalid,
    check_card,
    check_iban,
    iban_last4,
    scripted_cards_from_toml,
)
from shared.clock import SYSTEM_CLOCK, Clock

TEST_CARDS_PATH = Path(__file__).resolve().parent / "data" / "test_cards.toml"

TOKEN_PREFIX = "tok_"  # noqa: S105 (a prefix, not a secret)
TOKEN_LENGTH = 24  # 62**24 ≈ 2**143 possibilities: a collision is not a case to handle
_TOKEN_ALPHABET = string.ascii_letters + string.digits

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tokens (
    token        TEXT PRIMARY KEY,
    kind         TEXT NOT NULL CHECK (kind IN ('card', 'bank_account')),
    brand        TEXT,
    last4        TEXT NOT NULL,
    expiry_month INTEGER,
    expiry_year  INTEGER,
    country      TEXT,
    fingerprint  TEXT NOT NULL,
    behaviour    TEXT NOT NULL,
    created_at   TEXT NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS tokens_by_fingerprint ON tokens (fingerprint);
"""
_COLUMNS = "token, kind, brand, last4, expiry_month, expiry_year, country, fingerprint, behaviour, created_at"


class TokenKind(StrEnum):
    CARD = "card"
    BANK_ACCOUNT = "bank_account"


@dataclass(frozen=True, slots=True)
class CardToken:
    """What the vault hands back for a card: everything another service may store or log."""

    token: str
    brand: CardBrand
    last4: str
    expiry_month: int
    expiry_year: int
    fingerprint: str
    """The same for every token of one card number (lets a wallet notice a card added twice)."""


@dataclass(frozen=True, slots=True)
class BankToken:
    """What the vault hands back for a bank account."""

    token: str
    last4: str
    country: str


@dataclass(frozen=True, slots=True)
class StoredToken:
    """A row of the token table, as the simulator itself sees it."""

    token: str
    kind: TokenKind
    brand: CardBrand | None
    last4: str
    expiry_month: int | None
    expiry_year: int | None
    country: str | None
    fingerprint: str
    behaviour: Behaviour
    created_at: datetime


def load_scripted_cards(path: Path = TEST_CARDS_PATH) -> dict[str, ScriptedCard]:
    """Read and check the test-card table; :class:`ScriptedCardsInvalid` names a bad row."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise ScriptedCardsInvalid(f"{path}: not valid TOML ({error})") from None
    return scripted_cards_from_toml(document, str(path))


def new_token() -> str:
    return TOKEN_PREFIX + "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(TOKEN_LENGTH))


class CardVault:
    """Tokens over one SQLite file; open with :meth:`open`, use as a context manager to close."""

    def __init__(
        self,
        connection: sqlite3.Connection,
        fingerprint_key: str,
        scripted_cards: Mapping[str, ScriptedCard],
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._connection = connection
        self._key = fingerprint_key.encode()
        self._scripted = scripted_cards
        self._clock = clock
        self._lock = threading.Lock()

    @classmethod
    def open(
        cls,
        path: Path,
        fingerprint_key: str,
        scripted_cards: Mapping[str, ScriptedCard],
        clock: Clock = SYSTEM_CLOCK,
    ) -> Self:
        """Connect to (and create, if new) the vault's database file."""
        path.parent.mkdir(parents=True, exist_ok=True)
        # One connection shared by the server's worker threads; the lock serialises its use.
        connection = sqlite3.connect(path, check_same_thread=False)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.executescript(_SCHEMA)
        return cls(connection, fingerprint_key, scripted_cards, clock)

    def close(self) -> None:
        with self._lock:
            self._connection.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def fingerprint(self, number: str) -> str:
        """HMAC-SHA256 of the bare number (card digits or compact IBAN), hex."""
        return hmac.new(self._key, number.encode(), hashlib.sha256).hexdigest()

    def behaviour_of(self, digits: str) -> Behaviour:
        scripted = self._scripted.get(digits)
        return scripted.behaviour if scripted is not None else Behaviour.APPROVE

    def tokenize_card(
        self, number: str, expiry_month: int, expiry_year: int, today: date, cvc: str | None = None
    ) -> CardToken:
        """Check the card (:class:`~services.funding.cards.CardRefused` if it breaks a rule) and
        store a new token for it; the CVC, if given, is checked and forgotten."""
        card = check_card(number, expiry_month, expiry_year, today, cvc)
        scripted = self._scripted.get(card.digits)
        stored = StoredToken(
            token=new_token(),
            kind=TokenKind.CARD,
            brand=card.brand,
            last4=card.last4,
            expiry_month=card.expiry_month,
            expiry_year=card.expiry_year,
            country=scripted.country if scripted is not None else None,
            fingerprint=self.fingerprint(card.digits),
            behaviour=self.behaviour_of(card.digits),
            created_at=self._clock.now(),
        )
        self._insert(stored)
        return CardToken(stored.token, card.brand, card.last4, card.expiry_month, card.expiry_year, stored.fingerprint)

    def tokenize_bank_account(self, iban: str) -> BankToken:
        """Check the IBAN (:class:`~services.funding.cards.BankAccountRefused`) and store a token."""
        compact = check_iban(iban)
        stored = StoredToken(
            token=new_token(),
            kind=TokenKind.BANK_ACCOUNT,
            brand=None,
            last4=iban_last4(compact),
            expiry_month=None,
            expiry_year=None,
            country=compact[:2],
            fingerprint=self.fingerprint(compact),
            behaviour=Behaviour.APPROVE,  # no scripted bank accounts yet
            created_at=self._clock.now(),
        )
        self._insert(stored)
        return BankToken(stored.token, stored.last4, compact[:2])

    def lookup(self, token: str) -> StoredToken | None:
        with self._lock:
            row = self._connection.execute(f"SELECT {_COLUMNS} FROM tokens WHERE token = ?", (token,)).fetchone()  # noqa: S608 (column list is ours)
        return _from_row(row) if row is not None else None

    def _insert(self, stored: StoredToken) -> None:
        with self._lock, self._connection:  # the connection as context manager commits or rolls back
            self._connection.execute(
                f"INSERT INTO tokens ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",  # noqa: S608 (column list is ours)
                (
                    stored.token,
                    stored.kind.value,
                    stored.brand.value if stored.brand is not None else None,
                    stored.last4,
                    stored.expiry_month,
                    stored.expiry_year,
                    stored.country,
                    stored.fingerprint,
                    stored.behaviour.value,
                    stored.created_at.isoformat(),
                ),
            )


def _from_row(row: tuple[object, ...]) -> StoredToken:
    token, kind, brand, last4, month, year, country, fingerprint, behaviour, created_at = row
    return StoredToken(
        token=_text(token),
        kind=TokenKind(_text(kind)),
        brand=CardBrand(_text(brand)) if brand is not None else None,
        last4=_text(last4),
        expiry_month=_optional_int(month),
        expiry_year=_optional_int(year),
        country=_text(country) if country is not None else None,
        fingerprint=_text(fingerprint),
        behaviour=Behaviour(_text(behaviour)),
        created_at=datetime.fromisoformat(_text(created_at)),
    )


def _text(value: object) -> str:
    assert isinstance(value, str), "the STRICT table holds TEXT here"
    return value


def _optional_int(value: object) -> int | None:
    assert value is None or isinstance(value, int), "the STRICT table holds INTEGER here"
    return value
