"""Accounts A3: the regions table, as shipped and as the loader checks it.

The shipped file is checked against CLDR (babel) for currencies; every rule of the loader is
broken once in a small file written to ``tmp_path``, and the error must name the row and
country so an operator can find the line to fix.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from babel.numbers import get_territory_currencies
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.funding_sources import FundingType
from contracts.money import Money
from contracts.verification import VerificationLevel
from services.account.domain.regions import (
    DEFAULT_REGIONS_FILE,
    Region,
    RegionDataError,
    RegionTable,
    UnsupportedRegion,
    default_regions,
    load_regions,
)
from shared.errors import CommandRefused

L0, L1, L2 = VerificationLevel.L0, VerificationLevel.L1, VerificationLevel.L2

# Members of the euro area on 2026-01-01 (Bulgaria the latest); written out so the test does not
# trust the same CLDR data twice.
EURO_AREA = frozenset(
    [
        "AT",
        "BE",
        "BG",
        "CY",
        "DE",
        "EE",
        "ES",
        "FI",
        "FR",
        "GR",
        "HR",
        "IE",
        "IT",
        "LT",
        "LU",
        "LV",
        "MT",
        "NL",
        "PT",
        "SI",
        "SK",
    ],
)


@pytest.fixture(scope="module")
def shipped() -> RegionTable:
    return load_regions()


def money(amount_minor: int, currency: str) -> Money:
    return Money(amount_minor=amount_minor, currency=currency)


# --- the shipped table ----------------------------------------------------------------------------


class TestShippedTableA3:
    def test_it_loads_with_between_50_and_60_regions(self, shipped: RegionTable) -> None:
        assert DEFAULT_REGIONS_FILE.name == "regions.toml"
        assert 50 <= len(shipped) <= 60
        assert set(shipped) == set(shipped.countries)
        assert list(shipped.countries) == sorted(shipped.countries)

    def test_the_cached_default_is_the_shipped_table(self, shipped: RegionTable) -> None:
        assert default_regions() is default_regions()
        assert default_regions().countries == shipped.countries

    def test_each_currency_is_the_country_s_current_tender(self, shipped: RegionTable) -> None:
        for country in shipped:
            currency = shipped.get(country).currency
            if currency == "EUR":
                assert country in EURO_AREA, country
            else:
                assert currency in get_territory_currencies(country, tender=True), country

    def test_about_a_third_require_enhanced_verification(self, shipped: RegionTable) -> None:
        enhanced = [c for c in shipped if shipped.get(c).enhanced_verification_required]
        assert len(shipped) / 4 <= len(enhanced) <= len(shipped) / 2
        assert {"IN", "BR", "TR", "NG", "AE", "SA", "ZA", "KR", "JP"} <= set(enhanced)

    def test_l2_brings_more_exactly_where_enhanced_verification_is_required(self, shipped: RegionTable) -> None:
        for country in shipped:
            region = shipped.get(country)
            l1, l2 = region.limits_for(L1), region.limits_for(L2)
            if region.enhanced_verification_required:
                assert l2 != l1, country
                assert all(
                    getattr(l2, f).amount_minor >= getattr(l1, f).amount_minor
                    for f in ("per_payment", "daily", "monthly")
                )
            else:
                assert l2 == l1, country

    def test_every_region_allows_the_wallet_and_a_few_refuse_bank_accounts(self, shipped: RegionTable) -> None:
        regions = [shipped.get(c) for c in shipped]
        assert all(r.allows(FundingType.WALLET) for r in regions)
        without_bank = {r.country for r in regions if not r.allows(FundingType.BANK_ACCOUNT)}
        assert 1 <= len(without_bank) <= 8
        assert shipped.get("US").allows(FundingType.BANK_ACCOUNT)

    def test_amounts_are_in_the_region_currency(self, shipped: RegionTable) -> None:
        us, jp = shipped.get("US"), shipped.get("JP")
        assert us.limits_for(L0).per_payment == money(100_00, "USD")
        assert us.limits_for(L1).monthly == money(20_000_00, "USD")
        assert us.security_check_above == money(200_00, "USD")
        assert jp.security_check_above == money(30_000, "JPY")
        for country in shipped:
            region = shipped.get(country)
            limits = [region.limits_for(level) for level in VerificationLevel]
            amounts = [
                region.security_check_above,
                *(getattr(li, f) for li in limits for f in ("per_payment", "daily", "monthly")),
            ]
            assert {a.currency for a in amounts} == {region.currency}, country


# --- behaviour of a region ---------------------------------------------------------------------------


class TestRegionA3:
    def test_limits_for_each_level_grow_with_verification(self, shipped: RegionTable) -> None:
        br = shipped.get("BR")
        assert br.limits_for(L0).per_payment.amount_minor < br.limits_for(L1).per_payment.amount_minor
        assert br.limits_for(L1).per_payment.amount_minor < br.limits_for(L2).per_payment.amount_minor

    def test_allows_reflects_the_funding_types(self, shipped: RegionTable) -> None:
        ng = shipped.get("NG")
        assert ng.allows(FundingType.CARD)
        assert not ng.allows(FundingType.BANK_ACCOUNT)

    def test_security_check_is_needed_only_strictly_above_the_threshold(self, shipped: RegionTable) -> None:
        us = shipped.get("US")
        assert not us.needs_security_check(money(200_00, "USD"))
        assert us.needs_security_check(money(200_01, "USD"))
        assert not shipped.get("JP").needs_security_check(money(30_000, "JPY"))
        assert shipped.get("JP").needs_security_check(money(30_001, "JPY"))

    @settings(max_examples=60, deadline=None)
    @given(amount_minor=st.integers(min_value=0, max_value=10**9))
    def test_security_check_agrees_with_the_threshold(self, amount_minor: int) -> None:
        gb = default_regions().get("GB")
        expected = amount_minor > gb.security_check_above.amount_minor
        assert gb.needs_security_check(money(amount_minor, "GBP")) is expected

    def test_security_check_refuses_another_currency(self, shipped: RegionTable) -> None:
        with pytest.raises(ValueError, match=r"convert 1\.00 EUR to USD first"):
            shipped.get("US").needs_security_check(money(100, "EUR"))

    def test_a_region_is_immutable_and_hashable(self, shipped: RegionTable) -> None:
        us = shipped.get("US")
        with pytest.raises(dataclasses.FrozenInstanceError):
            us.country = "CA"  # type: ignore[misc]
        with pytest.raises(TypeError):
            us.limits[L0] = us.limits[L1]  # type: ignore[index]
        assert isinstance(us, Region)
        assert hash(us) == hash(shipped.get("US"))


class TestUnsupportedRegionA3:
    def test_a_country_not_served_is_refused_with_the_count(self, shipped: RegionTable) -> None:
        assert "KP" not in shipped
        with pytest.raises(UnsupportedRegion) as caught:
            shipped.get("KP")
        assert isinstance(caught.value, CommandRefused)
        assert caught.value.code == "unsupported_region"
        assert caught.value.country == "KP"
        assert caught.value.reason == (
            f"region 'KP' is not supported: TradeGuard serves {len(shipped)} regions "
            "(see services/account/data/regions.toml)"
        )

    @pytest.mark.parametrize("code", ["XX", "U", "USA", "", "1A"])
    def test_a_code_that_is_no_country_says_so(self, shipped: RegionTable, code: str) -> None:
        with pytest.raises(UnsupportedRegion) as caught:
            shipped.get(code)
        assert caught.value.code == "unsupported_region"
        assert f"{code!r} is not an ISO 3166-1 alpha-2 country code" in caught.value.reason
        assert f"TradeGuard serves {len(shipped)} regions" in caught.value.reason

    def test_a_lower_case_code_is_told_the_upper_case_form(self, shipped: RegionTable) -> None:
        with pytest.raises(UnsupportedRegion, match="country codes are upper case: 'FR'"):
            shipped.get("fr")


# --- the loader's rules ---------------------------------------------------------------------------------


def _limits(l0: tuple[str, str, str], l1: tuple[str, str, str], l2: tuple[str, str, str]) -> dict[str, Any]:
    names = ("per_payment", "daily", "monthly")
    return {level: dict(zip(names, values, strict=True)) for level, values in (("L0", l0), ("L1", l1), ("L2", l2))}


def us_row() -> dict[str, Any]:
    l1 = ("2000.00", "5000.00", "20000.00")
    return {
        "country": "US",
        "currency": "USD",
        "enhanced_verification_required": False,
        "funding_types": ["wallet", "card", "bank_account"],
        "security_check_above": "200.00",
        "limits": _limits(("100.00", "200.00", "500.00"), l1, l1),
    }


def gb_row() -> dict[str, Any]:
    l1 = ("1600.00", "3900.00", "16000.00")
    return {
        "country": "GB",
        "currency": "GBP",
        "enhanced_verification_required": False,
        "funding_types": ["wallet", "card", "bank_account"],
        "security_check_above": "160.00",
        "limits": _limits(("80.00", "160.00", "390.00"), l1, l1),
    }


def jp_row() -> dict[str, Any]:
    return {
        "country": "JP",
        "currency": "JPY",
        "enhanced_verification_required": True,
        "funding_types": ["wallet", "card"],
        "security_check_above": "30000",
        "limits": _limits(
            ("15000", "30000", "75000"), ("300000", "750000", "3000000"), ("1500000", "3000000", "15000000")
        ),
    }


def _value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string for the plain text used here
    if isinstance(value, list):
        return "[" + ", ".join(_value(item) for item in value) + "]"
    return repr(value)


def render(rows: list[dict[str, Any]]) -> str:
    """The rows as a regions file: scalar keys first, then one sub-table per level."""
    lines: list[str] = []
    for row in rows:
        lines.append("[[region]]")
        lines.extend(f"{key} = {_value(value)}" for key, value in row.items() if key != "limits")
        limits = row.get("limits")
        if isinstance(limits, dict):
            # Plain values belong to [region.limits] itself, so they must come before its sub-tables.
            lines.append("[region.limits]")
            lines.extend(f"{level} = {_value(table)}" for level, table in limits.items() if not isinstance(table, dict))
            for level, table in limits.items():
                if isinstance(table, dict):
                    lines.append(f"[region.limits.{level}]")
                    lines.extend(f"{key} = {_value(value)}" for key, value in table.items())
        elif limits is not None:
            lines.append(f"limits = {_value(limits)}")
        lines.append("")
    return "\n".join(lines)


def write(tmp_path: Path, rows: list[dict[str, Any]]) -> Path:
    path = tmp_path / "regions.toml"
    path.write_text(render(rows), encoding="utf-8")
    return path


def test_the_test_files_are_valid_when_left_alone(tmp_path: Path) -> None:
    table = load_regions(write(tmp_path, [us_row(), gb_row(), jp_row()]))
    assert table.countries == ("GB", "JP", "US")
    assert not table.get("JP").allows(FundingType.BANK_ACCOUNT)
    with pytest.raises(UnsupportedRegion, match=r"serves 3 regions \(see .*regions.toml\)"):
        table.get("FR")


Mutation = Callable[[dict[str, Any]], object]


def _set_limit(level: str, name: str, value: str) -> Mutation:
    return lambda row: row["limits"][level].__setitem__(name, value)


def _enhanced(row: dict[str, Any]) -> None:
    row["enhanced_verification_required"] = True
    row["limits"]["L2"] = {"per_payment": "8000.00", "daily": "16000.00", "monthly": "78000.00"}


def _enhanced_with_l2_below_l1(row: dict[str, Any]) -> None:
    _enhanced(row)
    row["limits"]["L2"]["per_payment"] = "1000.00"


BROKEN_ROWS: list[tuple[str, Mutation, str]] = [
    ("unknown key", lambda row: row.update(colour="red"), "unknown key 'colour' in the row"),
    ("missing key", lambda row: row.pop("currency"), "missing key 'currency' in the row"),
    ("missing country", lambda row: row.pop("country"), "missing key 'country' in the row"),
    ("unknown country", lambda row: row.update(country="XX"), "'XX' is not an ISO 3166-1 alpha-2 country code"),
    ("alpha-3 country", lambda row: row.update(country="GBR"), "'GBR' is not an ISO 3166-1 alpha-2 country code"),
    ("lower-case country", lambda row: row.update(country="gb"), "country codes are upper case: 'GB'"),
    ("country not a string", lambda row: row.update(country=44), "country must be a string"),
    ("unknown currency", lambda row: row.update(currency="ABC"), "currency 'ABC' is not an ISO 4217 code"),
    ("currency not money", lambda row: row.update(currency="XAU"), "without a minor unit (not money)"),
    ("enhanced not a bool", lambda row: row.update(enhanced_verification_required="yes"), "must be true or false"),
    (
        "unknown funding type",
        lambda row: row.update(funding_types=["wallet", "cash"]),
        "funding type 'cash' is not one of",
    ),
    ("no wallet", lambda row: row.update(funding_types=["card"]), "funding_types must include 'wallet'"),
    ("funding type twice", lambda row: row.update(funding_types=["wallet", "card", "card"]), "lists a type twice"),
    ("funding types not a list", lambda row: row.update(funding_types="wallet"), "funding_types must be a list"),
    (
        "float amount",
        lambda row: row.update(security_check_above=160.0),
        'must be a decimal string such as "100.00", not a float',
    ),
    (
        "integer amount",
        lambda row: row.update(security_check_above=160),
        'must be a decimal string such as "100.00", not an integer (160)',
    ),
    (
        "negative amount",
        lambda row: row.update(security_check_above="-5.00"),
        "'-5.00' is not a positive decimal string",
    ),
    ("exponent amount", lambda row: row.update(security_check_above="1e3"), "'1e3' is not a positive decimal string"),
    ("zero amount", lambda row: row.update(security_check_above="0.00"), "must be greater than zero"),
    (
        "too many decimals",
        _set_limit("L0", "daily", "160.005"),
        "limits.L0.daily '160.005' has 3 decimals but GBP has 2",
    ),
    ("amount too large", _set_limit("L0", "monthly", "100000000001"), "above the most an amount may be"),
    (
        "per payment above daily",
        _set_limit("L1", "per_payment", "4000.00"),
        "limits.L1.per_payment 4,000.00 GBP is above limits.L1.daily 3,900.00 GBP",
    ),
    (
        "daily above monthly",
        _set_limit("L0", "daily", "400.00"),
        "limits.L0.daily 400.00 GBP is above limits.L0.monthly",
    ),
    (
        "L1 below L0",
        _set_limit("L1", "per_payment", "50.00"),
        "limits.L1.per_payment 50.00 GBP is below limits.L0.per_payment 80.00 GBP",
    ),
    ("L2 below L1", _enhanced_with_l2_below_l1, "limits.L2.per_payment 1,000.00 GBP is below limits.L1.per_payment"),
    (
        "L2 above L1 without enhanced verification",
        _set_limit("L2", "monthly", "20000.00"),
        "enhanced_verification_required is false, so limits.L2 must equal limits.L1",
    ),
    (
        "enhanced without more at L2",
        lambda row: row.update(enhanced_verification_required=True),
        "must raise at least one limit above limits.L1",
    ),
    ("level missing", lambda row: row["limits"].pop("L2"), "missing key 'L2' in limits"),
    ("unknown level", lambda row: row["limits"].update(L3=row["limits"]["L2"]), "unknown key 'L3' in limits"),
    ("limit missing", lambda row: row["limits"]["L1"].pop("monthly"), "missing key 'monthly' in limits.L1"),
    ("unknown limit", _set_limit("L1", "weekly", "1.00"), "unknown key 'weekly' in limits.L1"),
    ("level not a table", lambda row: row["limits"].update(L1="lots"), "limits.L1 must be a table"),
]


@pytest.mark.parametrize(("mutate", "rule"), [case[1:] for case in BROKEN_ROWS], ids=[case[0] for case in BROKEN_ROWS])
def test_a_broken_row_is_refused_naming_row_country_and_rule(tmp_path: Path, mutate: Mutation, rule: str) -> None:
    broken = gb_row()
    mutate(broken)
    country = broken.get("country")
    with pytest.raises(RegionDataError) as caught:
        load_regions(write(tmp_path, [us_row(), broken]))
    where = "no country" if country is None else f"country {country!r}"
    assert f"regions.toml row 2 ({where}): " in str(caught.value)
    assert rule in str(caught.value)
    assert (caught.value.row, caught.value.country) == (2, country)


def test_the_enhanced_variant_of_the_test_row_is_valid(tmp_path: Path) -> None:
    row = gb_row()
    _enhanced(row)
    assert load_regions(write(tmp_path, [row])).get("GB").limits_for(L2).monthly == money(78_000_00, "GBP")


@pytest.mark.parametrize("amount", ["30000.5", "30000.00"])
def test_a_currency_without_minor_units_takes_no_decimals(tmp_path: Path, amount: str) -> None:
    row = jp_row()
    row["security_check_above"] = amount
    with pytest.raises(
        RegionDataError, match=r"row 1 \(country 'JP'\): security_check_above .* but JPY has 0 minor-unit digits"
    ):
        load_regions(write(tmp_path, [row]))


def test_a_country_listed_twice_names_both_rows(tmp_path: Path) -> None:
    with pytest.raises(RegionDataError) as caught:
        load_regions(write(tmp_path, [gb_row(), us_row(), copy.deepcopy(gb_row())]))
    assert "regions.toml row 3 (country 'GB'): 'GB' is listed twice: rows 1 and 3" in str(caught.value)


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("", "has no [[region]] tables"),
        ("region = 1\n", "has no [[region]] tables"),
        ("[[region]\n", "is not valid TOML"),
        ('version = 2\n[[region]]\ncountry = "US"\n', "unknown top-level key 'version'"),
    ],
    ids=["empty", "not an array of tables", "not TOML", "unknown top-level key"],
)
def test_a_broken_file_is_refused_naming_it(tmp_path: Path, text: str, rule: str) -> None:
    path = tmp_path / "regions.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(RegionDataError) as caught:
        load_regions(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert rule in str(caught.value)
    assert caught.value.row is None


def test_a_missing_file_is_refused_naming_it(tmp_path: Path) -> None:
    with pytest.raises(RegionDataError, match=r"regions\.toml: cannot be read"):
        load_regions(tmp_path / "regions.toml")


def test_a_row_that_is_not_a_table_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "regions.toml"
    path.write_text('region = ["US"]\n', encoding="utf-8")
    with pytest.raises(RegionDataError, match=r"regions.toml row 1 \(no country\): the row must be a table"):
        load_regions(path)
