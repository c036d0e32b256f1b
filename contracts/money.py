"""Money on the wire: integer minor units plus an ISO 4217 currency code, never a float.

Which codes are currencies comes from ``pycountry`` (ISO 4217), how many minor-unit digits
each has from ``babel`` (CLDR, :func:`babel.numbers.get_currency_precision`); nothing here
is a hand-written table.

**Codes that are not money are refused.** ISO 4217 also lists codes in the ``X`` range that
no one can pay with: precious metals (XAU, XAG, XPD, XPT), bond-market and accounting units
(XBA-XBD, XDR, XSU, XUA, XAD), the testing code XTS and "no currency" XXX. ISO gives them no
minor unit (CLDR still answers 2 for them). An ``X`` code is accepted only when CLDR records
it as some territory's legal tender: XAF, XCD, XCG, XOF and XPF. Every other ISO 4217 code
is accepted, fund codes (BOV, CLF, ...) included.

**Bounds.** No amount a message moves exceeds 100 billion major units of its currency
(:func:`max_amount_minor`) and no balance 100 trillion (:func:`max_balance_minor`): the
largest is 10**18 minor units (a 4-digit currency's balance), so a balance plus an amount
always fits a signed 64-bit column. :class:`Money` (an amount) and :class:`Balance` (what a
wallet or ledger account holds) have the same wire shape and differ only in their bound.
"""

from __future__ import annotations

from decimal import Decimal
from functools import cache
from typing import Annotated, Any, ClassVar, Self

import pycountry
from babel.core import get_global
from babel.numbers import get_currency_precision
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema, model_validator
from pydantic_core import PydanticCustomError

AMOUNT_MAJOR_DIGITS = 11
"""An amount is at most 10**11 (100 billion) major units."""
BALANCE_MAJOR_DIGITS = 14
"""A balance is at most 10**14 (100 trillion) major units."""


def _legal_tender_somewhere() -> frozenset[str]:
    """Codes CLDR records as the legal tender of some territory, at any time."""
    return frozenset(
        code
        for history in get_global("territory_currencies").values()
        for code, _start, _end, tender in history
        if tender
    )


def _accepted_currencies() -> tuple[str, ...]:
    tender = _legal_tender_somewhere()
    codes = (currency.alpha_3 for currency in pycountry.currencies)
    return tuple(sorted(code for code in codes if not code.startswith("X") or code in tender))


CURRENCIES: tuple[str, ...] = _accepted_currencies()
"""Every accepted currency code, sorted."""
_CURRENCY_SET = frozenset(CURRENCIES)
NOT_MONEY: tuple[str, ...] = tuple(sorted(c.alpha_3 for c in pycountry.currencies if c.alpha_3 not in _CURRENCY_SET))
"""ISO 4217 codes refused because they are not money (no minor unit): XAU, XTS, XXX, ..."""


def _refuse(currency: str) -> PydanticCustomError:
    """Why a code is refused; names it only when it is three letters (a longer input could be anything)."""
    if len(currency) == 3 and currency.isascii() and currency.isalpha():
        if currency.upper() in _CURRENCY_SET:
            return PydanticCustomError(
                "currency_not_upper_case",
                "currency '{currency}' must be upper case: '{upper}'",
                {"currency": currency, "upper": currency.upper()},
            )
        if currency.upper() in NOT_MONEY:
            return PydanticCustomError(
                "currency_not_money",
                "currency '{currency}' is an ISO 4217 code without a minor unit (not money); refused",
                {"currency": currency},
            )
        return PydanticCustomError(
            "currency_unknown", "currency '{currency}' is not an ISO 4217 code", {"currency": currency}
        )
    return PydanticCustomError("currency_unknown", "currency must be a three-letter ISO 4217 code")


def _validated_currency(currency: str) -> str:
    if currency in _CURRENCY_SET:
        return currency
    raise _refuse(currency)


@cache
def minor_unit_exponent(currency: str) -> int:
    """Digits of the minor unit: 2 for USD (cents), 0 for JPY, 3 for KWD; ValueError for a refused code."""
    if currency not in _CURRENCY_SET:
        raise ValueError(str(_refuse(currency)))
    return int(get_currency_precision(currency))


@cache
def max_amount_minor(currency: str) -> int:
    """The largest amount a message may carry, in minor units: 100 billion major units."""
    return int(10 ** (AMOUNT_MAJOR_DIGITS + minor_unit_exponent(currency)))


@cache
def max_balance_minor(currency: str) -> int:
    """The largest balance a wallet or ledger account may reach, in minor units: 100 trillion major units."""
    return int(10 ** (BALANCE_MAJOR_DIGITS + minor_unit_exponent(currency)))


def currencies_by_exponent() -> dict[int, tuple[str, ...]]:
    """Every accepted code grouped by its minor-unit exponent, both sorted."""
    groups: dict[int, list[str]] = {}
    for code in CURRENCIES:
        groups.setdefault(minor_unit_exponent(code), []).append(code)
    return {exponent: tuple(groups[exponent]) for exponent in sorted(groups)}


CurrencyCode = Annotated[
    str,
    AfterValidator(_validated_currency),
    WithJsonSchema(
        {
            "type": "string",
            "enum": list(CURRENCIES),
            "description": "ISO 4217 currency code, upper case; codes that are not money (XAU, XTS, XXX, ...) "
            "are refused.",
            "examples": ["USD"],
        }
    ),
]


def _bounds_schema(schema: dict[str, Any], model: type[BaseModel]) -> None:
    """Say the per-currency maximum in the JSON Schema: one ``if currency in [...] then maximum`` per exponent."""
    assert issubclass(model, Balance)
    groups = currencies_by_exponent()
    schema["properties"]["amount_minor"]["maximum"] = max(model.max_minor(codes[0]) for codes in groups.values())
    schema["allOf"] = [
        {
            "if": {"properties": {"currency": {"enum": list(codes)}}, "required": ["currency"]},
            "then": {"properties": {"amount_minor": {"maximum": model.max_minor(codes[0])}}},
        }
        for codes in groups.values()
    ]


class Balance(BaseModel):
    """What a wallet or ledger account holds, in the currency's minor unit; at most 100 trillion major units."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, json_schema_extra=_bounds_schema)

    _bound_text: ClassVar[str] = "a balance is at most 100 trillion major units"

    amount_minor: int = Field(
        ge=0,
        description="Amount in minor units of the currency (cents for USD); an integer, never a float or a string. "
        "The maximum depends on the currency's exponent (see allOf).",
        examples=[12999],
    )
    currency: CurrencyCode

    @classmethod
    def max_minor(cls, currency: str) -> int:
        """The bound on ``amount_minor`` in ``currency`` for this kind of value."""
        return max_balance_minor(currency)

    @model_validator(mode="after")
    def _within_bound(self) -> Self:
        bound = type(self).max_minor(self.currency)
        if self.amount_minor > bound:
            raise PydanticCustomError(
                "amount_too_large",
                "amount_minor must be at most {bound} for {currency}: {rule}",
                {"bound": bound, "currency": self.currency, "rule": self._bound_text},
            )
        return self

    # Value semantics: 5 USD is 5 USD whether it is typed as an amount or a balance.
    def __eq__(self, other: object) -> bool:
        if isinstance(other, Balance):
            return self.amount_minor == other.amount_minor and self.currency == other.currency
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.amount_minor, self.currency))

    def __add__(self, other: Balance) -> Self:
        """The sum, of this value's type. ValueError if the currencies differ or the sum exceeds the bound."""
        self._require_same_currency(other)
        return self._result(self.amount_minor + other.amount_minor, "sum")

    def __sub__(self, other: Balance) -> Self:
        """The difference, of this value's type. ValueError if the currencies differ or it would be negative."""
        self._require_same_currency(other)
        return self._result(self.amount_minor - other.amount_minor, "difference")

    def _result(self, amount_minor: int, what: str) -> Self:
        if amount_minor < 0:
            msg = f"{self.currency} {what} would be negative ({amount_minor} minor units)"
            raise ValueError(msg)
        bound = type(self).max_minor(self.currency)
        if amount_minor > bound:
            msg = (
                f"{self.currency} {what} {amount_minor} exceeds the {type(self).__name__} bound of {bound} minor units"
            )
            raise ValueError(msg)
        return self.model_copy(update={"amount_minor": amount_minor})  # checked above: no need to validate again

    def _require_same_currency(self, other: Balance) -> None:
        if other.currency != self.currency:
            msg = f"cannot combine {self.currency} with {other.currency}"
            raise ValueError(msg)

    @property
    def decimal(self) -> Decimal:
        """The amount in major units, exactly (12999 USD minor units -> Decimal('129.99'))."""
        return Decimal(self.amount_minor).scaleb(-minor_unit_exponent(self.currency))

    def __str__(self) -> str:
        return f"{self.decimal:,} {self.currency}"


class Money(Balance):
    """An amount in the currency's minor unit (cents for USD, fen for CNY); at most 100 billion major units."""

    _bound_text: ClassVar[str] = "an amount is at most 100 billion major units"

    @classmethod
    def max_minor(cls, currency: str) -> int:
        return max_amount_minor(currency)
