"""Accounts A3: the regions TradeGuard serves, read from a data file and checked at start.

The table lives in ``services/account/data/regions.toml``, one ``[[region]]`` table per region::

    [[region]]
    country = "JP"                          # ISO 3166-1 alpha-2, upper case
    currency = "JPY"                        # ISO 4217, accepted by contracts.money
    enhanced_verification_required = true   # false: L2 limits equal L1 exactly
    funding_types = ["wallet", "card", "bank_account"]   # "wallet" always
    security_check_above = "30000"          # PIN or TOTP for payments strictly above (A6)
    [region.limits.L0]
    per_payment = "15000"
    daily = "30000"
    monthly = "75000"
    [region.limits.L1]                      # ... and L2, with the same three keys

Amounts are decimal strings in major units of the region's currency, never TOML floats (a
binary float cannot hold 0.10 exactly), greater than zero and with no more decimals than the
currency has minor-unit digits. The loader refuses the whole file at the first broken rule
with :class:`RegionDataError`, naming the row (1-based ``[[region]]`` index), its country and
the rule: a service must not start with a region whose limits contradict each other.

Rules checked per row: no unknown or missing keys; a real ISO 3166-1 country, listed once; a
currency that is money (:data:`contracts.money.CURRENCIES`); amounts as above; funding types
from :class:`FundingType`, listed once, wallet among them; per_payment <= daily <= monthly
within a level; no limit lower at L1 than at L0, or at L2 than at L1; and L2 above L1 in at
least one limit exactly where the region requires enhanced verification.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cache
from itertools import pairwise
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pycountry

from contracts import Limits, VerificationLevel
from contracts.funding_sources import FundingType
from contracts.money import CURRENCIES, Money, max_amount_minor, minor_unit_exponent
from shared.errors import CommandRefused

DEFAULT_REGIONS_FILE = Path(__file__).resolve().parents[1] / "data" / "regions.toml"
"""The table the account service ships with."""
_PROJECT_ROOT = DEFAULT_REGIONS_FILE.parents[3]  # errors show paths relative to it, as an operator searches the repo

_ROW_KEYS = frozenset(
    {"country", "currency", "enhanced_verification_required", "funding_types", "security_check_above", "limits"}
)
_LIMIT_FIELDS = ("per_payment", "daily", "monthly")
_LEVELS = tuple(VerificationLevel)  # L0, L1, L2: the order limits may only grow in
_CURRENCY_SET = frozenset(CURRENCIES)
# Plain digits with an optional fraction: refuses signs, exponents, NaN and blanks that Decimal() would take.
_DECIMAL_STRING = re.compile(r"[0-9]+(?:\.[0-9]+)?")


class UnsupportedRegion(CommandRefused):
    """A command names a country TradeGuard does not serve (or that is no country at all)."""

    def __init__(self, country: str, reason: str) -> None:
        super().__init__("unsupported_region", reason)
        self.country = country


class RegionDataError(ValueError):
    """The regions file breaks a rule; raised at start, before the service takes any message."""

    def __init__(self, source: str, rule: str, *, row: int | None = None, country: object = None) -> None:
        where = source if row is None else f"{source} row {row} ({_describe_country(country)})"
        super().__init__(f"{where}: {rule}")
        self.source = source
        self.row = row
        self.country = country
        self.rule = rule


class _RuleBroken(Exception):
    """A row check failed; the loader adds the file, row and country."""


@dataclass(frozen=True, slots=True)
class Region:
    """One supported country: its wallet currency and what its accounts may do at each level."""

    country: str
    currency: str
    enhanced_verification_required: bool
    funding_types: frozenset[FundingType]
    security_check_above: Money
    # Read-only mapping; left out of the hash because a mapping has none (equality still compares it).
    limits: Mapping[VerificationLevel, Limits] = field(hash=False)

    def limits_for(self, level: VerificationLevel) -> Limits:
        """What an account of this region may pay at ``level``."""
        return self.limits[level]

    def allows(self, funding_type: FundingType) -> bool:
        """Whether accounts of this region may pay or top up from this kind of source."""
        return funding_type in self.funding_types

    def needs_security_check(self, amount: Money) -> bool:
        """Whether a payment of ``amount`` needs the PIN or a TOTP code: only strictly above the threshold.

        The threshold is in the region's currency; comparing another currency would need a
        rate, which is the payment service's business, so it is refused with ValueError.
        """
        if amount.currency != self.currency:
            msg = (
                f"region {self.country} sets its security check in {self.currency}; "
                f"convert {amount} to {self.currency} first"
            )
            raise ValueError(msg)
        return amount.amount_minor > self.security_check_above.amount_minor


class RegionTable:
    """The supported regions by country code; :meth:`get` refuses any other country."""

    __slots__ = ("_by_country", "_source")

    def __init__(self, regions: Mapping[str, Region], source: str) -> None:
        self._by_country: Mapping[str, Region] = MappingProxyType(dict(regions))
        self._source = source

    def get(self, country: str) -> Region:
        """The region of ``country``; :class:`UnsupportedRegion` with the reason if there is none."""
        region = self._by_country.get(country)
        if region is None:
            raise UnsupportedRegion(country, self._refusal(country))
        return region

    def _refusal(self, country: str) -> str:
        served = f"TradeGuard serves {len(self)} regions (see {self._source})"
        problem = _iso_country_problem(country)
        if problem is not None:
            return f"region {country!r} is not supported: {problem}; {served}"
        return f"region {country!r} is not supported: {served}"

    def __contains__(self, country: object) -> bool:
        return country in self._by_country

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_country)

    def __len__(self) -> int:
        return len(self._by_country)

    @property
    def countries(self) -> tuple[str, ...]:
        """Every supported country code, sorted."""
        return tuple(sorted(self._by_country))

    def __repr__(self) -> str:
        return f"RegionTable({len(self)} regions from {self._source})"


def load_regions(path: Path = DEFAULT_REGIONS_FILE) -> RegionTable:
    """Read and check a regions file; :class:`RegionDataError` at the first broken rule."""
    source = _display(path)
    rows = _read_rows(path, source)
    regions: dict[str, Region] = {}
    first_row: dict[str, int] = {}
    for number, raw in enumerate(rows, start=1):
        country = raw.get("country") if isinstance(raw, dict) else None
        try:
            region = _parse_row(raw)
        except _RuleBroken as broken:
            raise RegionDataError(source, str(broken), row=number, country=country) from None
        if region.country in first_row:
            rule = f"{region.country!r} is listed twice: rows {first_row[region.country]} and {number}"
            raise RegionDataError(source, rule, row=number, country=country)
        first_row[region.country] = number
        regions[region.country] = region
    return RegionTable(regions, source)


@cache
def default_regions() -> RegionTable:
    """The shipped table, read once per process."""
    return load_regions()


# --- reading the file ------------------------------------------------------------------------------


def _display(path: Path) -> str:
    """The path as an operator would look for it: relative to the project when it is inside it."""
    resolved = path.resolve()
    if resolved.is_relative_to(_PROJECT_ROOT):
        return resolved.relative_to(_PROJECT_ROOT).as_posix()
    return str(path)


def _read_rows(path: Path, source: str) -> list[Any]:
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise RegionDataError(source, f"cannot be read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise RegionDataError(source, f"is not valid TOML: {exc}") from None
    unknown = sorted(set(document) - {"region"})
    if unknown:
        raise RegionDataError(source, f"unknown top-level key {unknown[0]!r}: only [[region]] tables belong here")
    rows = document.get("region")
    if not isinstance(rows, list) or not rows:
        raise RegionDataError(source, "has no [[region]] tables")
    return rows


def _describe_country(country: object) -> str:
    return "no country" if country is None else f"country {country!r}"


# --- one row ----------------------------------------------------------------------------------------


def _parse_row(raw: object) -> Region:
    table = _table(raw, "the row", _ROW_KEYS)
    # Checked in the order the keys are written, so the first error reported is the first one met reading the row.
    country = _country(table["country"])
    currency = _currency(table["currency"])
    enhanced = table["enhanced_verification_required"]
    if not isinstance(enhanced, bool):
        raise _RuleBroken(f"enhanced_verification_required must be true or false, not {enhanced!r}")
    funding_types = _funding_types(table["funding_types"])
    security_check_above = _money(table["security_check_above"], currency, "security_check_above")
    limits = _limits(table["limits"], currency)
    _check_enhanced_rule(limits, enhanced=enhanced)
    return Region(
        country=country,
        currency=currency,
        enhanced_verification_required=enhanced,
        funding_types=funding_types,
        security_check_above=security_check_above,
        limits=MappingProxyType(limits),
    )


def _table(raw: object, what: str, keys: frozenset[str] | tuple[str, ...]) -> dict[str, Any]:
    """``raw`` as a table with exactly ``keys``: unknown keys are typos, so they are refused, not ignored."""
    if not isinstance(raw, dict):
        raise _RuleBroken(f"{what} must be a table, not {raw!r}")
    unknown = sorted(set(raw) - set(keys))
    if unknown:
        raise _RuleBroken(f"unknown key {unknown[0]!r} in {what}; expected {', '.join(sorted(keys))}")
    missing = [key for key in sorted(keys) if key not in raw]
    if missing:
        raise _RuleBroken(f"missing key {missing[0]!r} in {what}")
    return raw


def _iso_country_problem(code: str) -> str | None:
    """Why ``code`` is not an ISO 3166-1 alpha-2 country code, or None when it is one."""
    not_iso = f"{code!r} is not an ISO 3166-1 alpha-2 country code"
    if len(code) != 2 or not code.isascii() or not code.isalpha():
        return not_iso
    if pycountry.countries.get(alpha_2=code.upper()) is None:
        return not_iso
    if not code.isupper():
        return f"country codes are upper case: {code.upper()!r}"
    return None


def _country(value: object) -> str:
    if not isinstance(value, str):
        raise _RuleBroken(f"country must be a string such as 'GB', not {value!r}")
    problem = _iso_country_problem(value)
    if problem is not None:
        raise _RuleBroken(problem)
    return value


def _currency(value: object) -> str:
    if not isinstance(value, str):
        raise _RuleBroken(f"currency must be a string such as 'GBP', not {value!r}")
    if value not in _CURRENCY_SET:
        try:
            minor_unit_exponent(value)  # raises with contracts.money's own explanation of the refusal
        except ValueError as exc:
            raise _RuleBroken(str(exc)) from None
    return value


def _funding_types(value: object) -> frozenset[FundingType]:
    allowed = ", ".join(repr(member.value) for member in FundingType)
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _RuleBroken(f"funding_types must be a list of strings from {allowed}, not {value!r}")
    unknown = [item for item in value if item not in {member.value for member in FundingType}]
    if unknown:
        raise _RuleBroken(f"funding type {unknown[0]!r} is not one of {allowed}")
    if len(set(value)) != len(value):
        raise _RuleBroken(f"funding_types lists a type twice: {value!r}")
    types = frozenset(FundingType(item) for item in value)
    if FundingType.WALLET not in types:
        # Every account holds a wallet in its region's currency; a region without it could not receive refunds.
        raise _RuleBroken(f"funding_types must include 'wallet': {value!r}")
    return types


def _money(value: object, currency: str, name: str) -> Money:
    """A decimal string in major units as Money, refusing anything the currency cannot hold exactly."""
    if not isinstance(value, str):
        kinds = {float: "a float", int: "an integer", bool: "a boolean"}
        kind = kinds.get(type(value), type(value).__name__)
        raise _RuleBroken(f'{name} must be a decimal string such as "100.00", not {kind} ({value!r})')
    if _DECIMAL_STRING.fullmatch(value) is None:
        raise _RuleBroken(f'{name} {value!r} is not a positive decimal string such as "100.00"')
    exponent = minor_unit_exponent(currency)
    decimals = len(value.partition(".")[2])
    if decimals > exponent:
        raise _RuleBroken(f"{name} {value!r} has {decimals} decimals but {currency} has {exponent} minor-unit digits")
    amount_minor = int(Decimal(value).scaleb(exponent))
    if amount_minor <= 0:
        raise _RuleBroken(f"{name} must be greater than zero, not {value!r}")
    if amount_minor > max_amount_minor(currency):
        raise _RuleBroken(f"{name} {value!r} {currency} is above the most an amount may be (100 billion major units)")
    return Money(amount_minor=amount_minor, currency=currency)


def _limits(value: object, currency: str) -> dict[VerificationLevel, Limits]:
    table = _table(value, "limits", tuple(level.value for level in _LEVELS))
    limits = {level: _level_limits(table[level.value], currency, level) for level in _LEVELS}
    for lower, higher in pairwise(_LEVELS):
        _check_not_lower(limits[lower], limits[higher], lower, higher)
    return limits


def _level_limits(value: object, currency: str, level: VerificationLevel) -> Limits:
    prefix = f"limits.{level.value}"
    table = _table(value, prefix, _LIMIT_FIELDS)
    amounts = {name: _money(table[name], currency, f"{prefix}.{name}") for name in _LIMIT_FIELDS}
    for smaller, larger in pairwise(_LIMIT_FIELDS):
        if amounts[smaller].amount_minor > amounts[larger].amount_minor:
            raise _RuleBroken(
                f"{prefix}.{smaller} {amounts[smaller]} is above {prefix}.{larger} {amounts[larger]}: "
                "within a level per_payment <= daily <= monthly"
            )
    return Limits(**amounts)


def _check_not_lower(lower: Limits, higher: Limits, lower_level: VerificationLevel, level: VerificationLevel) -> None:
    for name in _LIMIT_FIELDS:
        below, above = getattr(lower, name), getattr(higher, name)
        if above.amount_minor < below.amount_minor:
            raise _RuleBroken(
                f"limits.{level.value}.{name} {above} is below limits.{lower_level.value}.{name} {below}: "
                "a higher verification level never allows less"
            )


def _check_enhanced_rule(limits: Mapping[VerificationLevel, Limits], *, enhanced: bool) -> None:
    """L2 (address proof) raises limits exactly where the region requires enhanced verification."""
    l1, l2 = limits[VerificationLevel.L1], limits[VerificationLevel.L2]
    if not enhanced and l2 != l1:
        differing = next(name for name in _LIMIT_FIELDS if getattr(l2, name) != getattr(l1, name))
        raise _RuleBroken(
            "enhanced_verification_required is false, so limits.L2 must equal limits.L1 (L2 brings nothing here); "
            f"{differing} differs: {getattr(l2, differing)} at L2, {getattr(l1, differing)} at L1"
        )
    if enhanced and l2 == l1:
        raise _RuleBroken(
            "enhanced_verification_required is true, so limits.L2 must raise at least one limit above limits.L1"
        )
