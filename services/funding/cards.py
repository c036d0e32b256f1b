"""The vault's rules for cards and bank accounts (SPEC A4): pure functions, no I/O.

A refusal is a :class:`InstrumentRefused` naming the field and the rule. Its message never
contains the card number, the IBAN or the CVC, so it may be logged and sent back to the client
as is::

    InstrumentRefused(ValueError)    the vault will not tokenise what it was given
    ├── CardRefused                  a card number, expiry or CVC breaks a rule
    └── BankAccountRefused           an IBAN breaks a rule
    ScriptedCardsInvalid(ValueError) a row of the test-card table is wrong (raised at start)

The simulated issuer answers each card's charges the way its scripted :class:`Behaviour` says
(:mod:`services.funding.faults`); any valid card without a script is approved.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from contracts.funding_sources import CardBrand

# ISO/IEC 7812 numbers run 8 to 19 digits, but no brand we accept issues fewer than 13; 12 lets
# a short number reach the clearer "brand not recognised" or per-brand length message.
MIN_CARD_DIGITS = 12
MAX_CARD_DIGITS = 19
EXPIRY_YEARS = range(2000, 2101)  # the same bounds as contracts.funding_sources.AddCard

# People type card numbers in groups; spaces and hyphens carry no meaning and are dropped.
_CARD_SEPARATORS = re.compile(r"[ \-]")
_DIGITS = re.compile(r"[0-9]+")


class InstrumentRefused(ValueError):
    """The vault will not tokenise a card or bank account; ``message`` is safe to show and log."""

    def __init__(self, field: str, rule: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.rule = rule
        self.message = message


class CardRefused(InstrumentRefused):
    """A card number, expiry date or CVC breaks one of the rules below."""


class BankAccountRefused(InstrumentRefused):
    """An IBAN breaks one of the ISO 13616 rules below."""


# --- card numbers -----------------------------------------------------------------------------


def luhn_check_digit(payload: str) -> str:
    """The digit that, appended to ``payload`` (digits only), makes it pass the Luhn check."""
    if not _DIGITS.fullmatch(payload):
        raise ValueError("the Luhn payload must be a non-empty string of digits")
    # With the check digit appended, the payload's last digit is the first one that is doubled.
    total = sum(_luhn_value(int(d), doubled=i % 2 == 0) for i, d in enumerate(reversed(payload)))
    return str(-total % 10)


def luhn_valid(number: str) -> bool:
    """Whether ``number`` (digits, optionally grouped by spaces or hyphens) passes the Luhn check."""
    digits = _card_digits(number)
    if digits is None or len(digits) < 2:
        return False
    total = sum(_luhn_value(int(d), doubled=i % 2 == 1) for i, d in enumerate(reversed(digits)))
    return total % 10 == 0


def _luhn_value(digit: int, *, doubled: bool) -> int:
    if not doubled:
        return digit
    return digit * 2 - 9 if digit > 4 else digit * 2


def _card_digits(number: str) -> str | None:
    """The digits of a typed card number, or None when it holds anything else."""
    digits = _CARD_SEPARATORS.sub("", number)
    return digits if _DIGITS.fullmatch(digits) else None


@dataclass(frozen=True, slots=True)
class _IinRange:
    """Numbers whose first ``len(str(low))`` digits lie in ``low..high`` belong to ``brand``."""

    brand: CardBrand
    low: int
    high: int

    def matches(self, digits: str) -> bool:
        prefix = digits[: len(str(self.low))]
        return len(prefix) == len(str(self.low)) and self.low <= int(prefix) <= self.high


_IIN_RANGES = (
    _IinRange(CardBrand.VISA, 4, 4),
    _IinRange(CardBrand.MASTERCARD, 51, 55),
    _IinRange(CardBrand.MASTERCARD, 2221, 2720),
    _IinRange(CardBrand.AMEX, 34, 34),
    _IinRange(CardBrand.AMEX, 37, 37),
    _IinRange(CardBrand.DISCOVER, 6011, 6011),
    _IinRange(CardBrand.DISCOVER, 644, 649),
    _IinRange(CardBrand.DISCOVER, 65, 65),
    _IinRange(CardBrand.JCB, 3528, 3589),
    _IinRange(CardBrand.UNIONPAY, 62, 62),
)

BRAND_LENGTHS: Mapping[CardBrand, tuple[int, ...]] = {
    CardBrand.VISA: (13, 16, 19),
    CardBrand.MASTERCARD: (16,),
    CardBrand.AMEX: (15,),
    CardBrand.DISCOVER: (16, 17, 18, 19),
    CardBrand.JCB: (16, 17, 18, 19),
    CardBrand.UNIONPAY: (16, 17, 18, 19),
}

CVC_LENGTHS: Mapping[CardBrand, int] = {brand: 4 if brand is CardBrand.AMEX else 3 for brand in CardBrand}


def _brand_by_prefix(digits: str) -> CardBrand | None:
    return next((r.brand for r in _IIN_RANGES if r.matches(digits)), None)


def card_brand(number: str) -> CardBrand | None:
    """The brand whose IIN range holds ``number`` and which issues numbers of its length."""
    digits = _card_digits(number)
    if digits is None:
        return None
    brand = _brand_by_prefix(digits)
    return brand if brand is not None and len(digits) in BRAND_LENGTHS[brand] else None


def check_card_number(number: str) -> tuple[str, CardBrand]:
    """The number's digits and brand, or :class:`CardRefused` naming the first rule it breaks."""
    if not number.strip():
        raise CardRefused("number", "required", "number: is empty")
    digits = _card_digits(number)
    if digits is None:
        raise CardRefused("number", "format", "number: only digits, spaces and hyphens are allowed")
    if not MIN_CARD_DIGITS <= len(digits) <= MAX_CARD_DIGITS:
        raise CardRefused(
            "number",
            "length",
            f"number: has {len(digits)} digits; card numbers have {MIN_CARD_DIGITS} to {MAX_CARD_DIGITS}",
        )
    if not luhn_valid(digits):
        raise CardRefused("number", "luhn", "number: fails the Luhn check")
    brand = _brand_by_prefix(digits)
    if brand is None:
        supported = ", ".join(CardBrand)
        raise CardRefused("number", "brand", f"number: brand not recognised (supported: {supported})")
    if len(digits) not in BRAND_LENGTHS[brand]:
        lengths = _spoken_list([str(n) for n in BRAND_LENGTHS[brand]], "or")
        raise CardRefused("number", "brand_length", f"number: a {brand} number has {lengths} digits, not {len(digits)}")
    return digits, brand


# --- expiry and CVC ---------------------------------------------------------------------------


def check_expiry(month: int, year: int, today: date) -> None:
    """Refuse an impossible or past expiry; a card is valid through the last day of its month."""
    if not 1 <= month <= 12:
        raise CardRefused("expiry_month", "range", "expiry_month: must be 1 to 12")
    if year not in EXPIRY_YEARS:
        raise CardRefused(
            "expiry_year",
            "range",
            f"expiry_year: must be a four-digit year from {EXPIRY_YEARS.start} to {EXPIRY_YEARS.stop - 1}",
        )
    if card_expired(month, year, today):
        raise CardRefused("expiry", "expired", f"expiry: the card expired at the end of {month:02d}/{year}")


def card_expired(month: int, year: int, today: date) -> bool:
    """Whether a card valid through the last day of ``month``/``year`` has expired by ``today``."""
    return today > date(year, month, calendar.monthrange(year, month)[1])


def check_cvc(cvc: str, brand: CardBrand) -> None:
    """Refuse a CVC that is not the brand's number of digits (4 for amex, 3 for the others)."""
    length = CVC_LENGTHS[brand]
    if not (_DIGITS.fullmatch(cvc) and len(cvc) == length):
        raise CardRefused("cvc", "format", f"cvc: a {brand} card has a {length}-digit cvc")


@dataclass(frozen=True, slots=True)
class CheckedCard:
    """A card that passed every rule: its bare digits and what they tell (kept in memory only)."""

    digits: str
    brand: CardBrand
    expiry_month: int
    expiry_year: int

    @property
    def last4(self) -> str:
        return self.digits[-4:]

    def __repr__(self) -> str:  # the dataclass repr would print the number into a traceback or log
        return f"CheckedCard(brand={self.brand}, last4={self.last4}, expiry={self.expiry_month:02d}/{self.expiry_year})"


def check_card(number: str, expiry_month: int, expiry_year: int, today: date, cvc: str | None = None) -> CheckedCard:
    """Every card rule in the order a person fixes them: number, then expiry, then CVC."""
    digits, brand = check_card_number(number)
    check_expiry(expiry_month, expiry_year, today)
    if cvc is not None:  # the CVC is checked, never kept; callers that have none pass None
        check_cvc(cvc, brand)
    return CheckedCard(digits, brand, expiry_month, expiry_year)


# --- IBAN (ISO 13616) -------------------------------------------------------------------------

IBAN_LENGTHS: Mapping[str, int] = {
    "AD": 24, "AE": 23, "AT": 20, "BE": 16, "BG": 22, "BR": 29, "CH": 21, "CY": 28, "CZ": 24,
    "DE": 22, "DK": 18, "EE": 20, "ES": 24, "FI": 18, "FR": 27, "GB": 22, "GR": 27, "HR": 21,
    "HU": 28, "IE": 22, "IL": 23, "IS": 26, "IT": 27, "LI": 21, "LT": 20, "LU": 20, "LV": 21,
    "MC": 27, "MT": 31, "NL": 18, "NO": 15, "PL": 28, "PT": 25, "QA": 29, "RO": 24, "SA": 24,
    "SE": 24, "SI": 19, "SK": 24, "SM": 27, "TR": 26,
}  # fmt: skip
"""Length of the IBAN (without spaces) in the countries the simulated bank serves."""

_IBAN_CHARACTERS = re.compile(r"[A-Za-z0-9]+")
_IBAN_COUNTRY = re.compile(r"[A-Z]{2}")


def check_iban(iban: str) -> str:
    """The IBAN in its electronic form (no spaces, upper case), or :class:`BankAccountRefused`."""
    compact = iban.replace(" ", "")
    if not compact:
        raise BankAccountRefused("iban", "required", "iban: is empty")
    # Checked before upper-casing: str.upper() turns some non-ASCII letters into ASCII ones.
    if not _IBAN_CHARACTERS.fullmatch(compact):
        raise BankAccountRefused("iban", "format", "iban: only letters, digits and spaces are allowed")
    compact = compact.upper()
    country = compact[:2]
    if not _IBAN_COUNTRY.fullmatch(country):
        raise BankAccountRefused("iban", "country", "iban: must start with a two-letter country code")
    if country not in IBAN_LENGTHS:
        raise BankAccountRefused("iban", "country", f"iban: bank accounts in {country} are not supported")
    if len(compact) != IBAN_LENGTHS[country]:
        raise BankAccountRefused(
            "iban", "length", f"iban: a {country} IBAN has {IBAN_LENGTHS[country]} characters, not {len(compact)}"
        )
    if not compact[2:4].isdigit() or _iban_remainder(compact) != 1:
        raise BankAccountRefused("iban", "checksum", "iban: fails the mod-97 check")
    return compact


def iban_valid(iban: str) -> bool:
    """Whether ``iban`` (spaces allowed) is a well-formed IBAN of a supported country."""
    try:
        check_iban(iban)
    except BankAccountRefused:
        return False
    return True


def iban_last4(compact: str) -> str:
    """The last four digits of an IBAN (the contracts' ``last4`` is four digits; letters are skipped)."""
    return "".join(c for c in compact if c.isdigit())[-4:]


def _iban_remainder(compact: str) -> int:
    # ISO 13616: move the country and check digits to the end, read letters as 10..35, mod 97.
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97


# --- scripted test cards ----------------------------------------------------------------------


class Behaviour(StrEnum):
    """How the simulated issuer answers a card (the faults of SPEC P4 and "Funding networks")."""

    APPROVE = "approve"
    DECLINE_INSUFFICIENT_FUNDS = "decline_insufficient_funds"
    DECLINE_DO_NOT_HONOR = "decline_do_not_honor"
    DECLINE_STOLEN_CARD = "decline_stolen_card"
    TIMEOUT_ONCE = "timeout_once"
    """The first request times out; the next one is answered."""
    LOST_ANSWER = "lost_answer"
    """The request is carried out but its answer never arrives (resolved by a status inquiry)."""
    ISSUER_UNAVAILABLE = "issuer_unavailable"
    UNAVAILABLE_FIRST_REQUEST = "unavailable_first_request"
    """Every try of the first charge request naming the card is answered 503; later requests
    (another payment attempt, S2) go through."""


class ScriptedCardsInvalid(ValueError):
    """A row of the test-card table is wrong; the simulator refuses to start."""


@dataclass(frozen=True, slots=True)
class ScriptedCard:
    """A published test card number and the behaviour the simulator scripts for it."""

    number: str
    brand: CardBrand
    behaviour: Behaviour
    description: str = ""
    country: str | None = None


_ROW_KEYS = frozenset({"number", "brand", "behaviour", "description", "country"})


def scripted_cards_from_toml(document: Mapping[str, object], source: str) -> dict[str, ScriptedCard]:
    """The ``[[card]]`` rows of a parsed test-card file, keyed by number; every row is checked."""
    rows = document.get("card")
    if not isinstance(rows, list) or not rows:
        raise ScriptedCardsInvalid(f"{source}: expected one or more [[card]] tables")
    cards: dict[str, ScriptedCard] = {}
    for index, row in enumerate(rows, start=1):
        card = _scripted_card(row, f"{source}: card {index}")
        if card.number in cards:
            raise ScriptedCardsInvalid(f"{source}: card {index}: the same number appears twice")
        cards[card.number] = card
    return cards


def _scripted_card(row: object, where: str) -> ScriptedCard:
    if not isinstance(row, dict):
        raise ScriptedCardsInvalid(f"{where}: expected a table")
    unknown = set(row) - _ROW_KEYS
    if unknown:
        raise ScriptedCardsInvalid(f"{where}: unknown keys {sorted(unknown)}")
    number, brand, behaviour = row.get("number"), row.get("brand"), row.get("behaviour")
    description, country = row.get("description", ""), row.get("country")
    if not isinstance(number, str) or not isinstance(description, str):
        raise ScriptedCardsInvalid(f"{where}: number and description must be strings")
    if country is not None and not (isinstance(country, str) and _IBAN_COUNTRY.fullmatch(country)):
        raise ScriptedCardsInvalid(f"{where}: country must be a two-letter code")
    try:
        digits, found = check_card_number(number)
    except CardRefused as refused:
        raise ScriptedCardsInvalid(f"{where}: {refused.message}") from None
    if brand not in set(CardBrand) or found != brand:
        raise ScriptedCardsInvalid(f"{where}: brand {brand!r} given, but the number is a {found} card")
    if behaviour not in set(Behaviour):
        raise ScriptedCardsInvalid(f"{where}: behaviour {behaviour!r} unknown (known: {', '.join(Behaviour)})")
    return ScriptedCard(digits, found, Behaviour(behaviour), description, country)


def _spoken_list(items: list[str], conjunction: str) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} {conjunction} {items[-1]}"
