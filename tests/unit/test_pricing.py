"""Payments P3: cross-border pricing (conversion with a spread, fees by funding type, promotions).

Most tests price against a small table written to a temporary file, with round rates so the
expectations can be worked by hand (each is in a comment): 1 USD = 0.8 EUR, 0.75 GBP,
150 JPY, 0.3 KWD; spread 1%. The properties compare :func:`price` with an independent
computation in exact fractions. The shipped files are checked against the regions table.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.funding_sources import FundingType
from contracts.money import Money, minor_unit_exponent
from services.payment.domain.pricing import (
    DEFAULT_FEES_FILE,
    DEFAULT_RATES_FILE,
    AmountTooLarge,
    Breakdown,
    BudgetExhausted,
    CampaignBudget,
    CurrencyNotQuoted,
    Discount,
    Eligibility,
    FeeSchedule,
    FeeWaiver,
    PricingDataError,
    Promotions,
    Quote,
    QuoteExpired,
    QuoteMismatch,
    RateTable,
    load_fees,
    load_promotions,
    load_rates,
    price,
    remaining_budget,
    reserve_budget,
)
from shared.errors import CommandRefused

REGIONS_FILE = Path(__file__).resolve().parents[2] / "services" / "account" / "data" / "regions.toml"

NOW = datetime(2026, 11, 15, 12, 0, tzinfo=UTC)
WALLET, CARD, BANK = FundingType.WALLET, FundingType.CARD, FundingType.BANK_ACCOUNT

RATES_TOML = """\
base = "USD"
taken_at = 2026-11-15T08:00:00Z
quote_valid_seconds = 600
spread = "0.01"

[rates]
EUR = "0.8"
GBP = "0.75"
JPY = "150"
KWD = "0.3"
"""

FEES_TOML = """\
[fee.wallet]
rate = "0.01"
minimum = "0.30"

[fee.card]
rate = "0.025"
minimum = "0.50"

[fee.bank_account]
rate = "0.005"
minimum = "1.00"

[[promotion]]
id = "december-card-waiver"
kind = "fee_waiver"
starts_at = 2026-12-01T00:00:00Z
ends_at = 2027-01-01T00:00:00Z
funding_types = ["card"]

[[promotion]]
id = "spring-discount"
kind = "discount"
rate = "0.10"
cap = "5.00"
budget = "12.00"
starts_at = 2027-03-01T00:00:00Z
ends_at = 2027-04-01T00:00:00Z
buyer_regions = ["JP", "US"]
"""

# A discount running at NOW, for any payment: 10% off, at most 5.00 USD a payment, 12.00 USD in all.
DISCOUNT = Discount(
    id="ten-percent",
    eligibility=Eligibility(starts_at=NOW - timedelta(days=1), ends_at=NOW + timedelta(days=1)),
    rate=Decimal("0.10"),
    cap=Money(amount_minor=500, currency="USD"),
    budget=Money(amount_minor=1200, currency="USD"),
)
NO_PROMOTIONS = Promotions()


def usd(minor: int) -> Money:
    return Money(amount_minor=minor, currency="USD")


def money(minor: int, currency: str) -> Money:
    return Money(amount_minor=minor, currency=currency)


@pytest.fixture(scope="module")
def rates(tmp_path_factory: pytest.TempPathFactory) -> RateTable:
    path = tmp_path_factory.mktemp("pricing") / "rates.toml"
    path.write_text(RATES_TOML, encoding="utf-8")
    return load_rates(path)


@pytest.fixture(scope="module")
def fee_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pricing") / "fees.toml"
    path.write_text(FEES_TOML, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def fees(fee_file: Path) -> FeeSchedule:
    return load_fees(fee_file)


@pytest.fixture(scope="module")
def promotions(fee_file: Path) -> Promotions:
    return load_promotions(fee_file)


def pay(
    rates: RateTable,
    fees: FeeSchedule,
    amount: Money,
    buyer_currency: str,
    funding_type: FundingType = CARD,
    *,
    promotions: Promotions = NO_PROMOTIONS,
    now: datetime = NOW,
    used: dict[str, Money] | None = None,
    buyer_country: str | None = None,
) -> Breakdown:
    """Price with a fresh quote taken at ``now``, as the payment service would."""
    quote = rates.quote(amount.currency, buyer_currency, now)
    return price(
        amount, buyer_currency, funding_type, quote, fees, promotions, now, used or {}, buyer_country=buyer_country
    )


# --- conversion -------------------------------------------------------------------------------------


def test_p3_same_currency_payment_has_no_conversion_fee_or_promotion(
    rates: RateTable, fees: FeeSchedule, promotions: Promotions
) -> None:
    # A EUR price paid in EUR, during the card fee waiver: nothing to convert, no fee to waive.
    price_eur = money(10000, "EUR")
    during_waiver = datetime(2026, 12, 10, tzinfo=UTC)
    for quote in (None, rates.quote("EUR", "EUR", during_waiver)):
        breakdown = price(price_eur, "EUR", CARD, quote, fees, promotions, during_waiver, {})
        assert breakdown.rate is None
        assert breakdown.converted == breakdown.total == breakdown.settlement == price_eur
        assert breakdown.fee == breakdown.discount == money(0, "EUR")
        assert breakdown.promotion_id is None


def test_p3_identity_quote_is_rate_one_without_spread(rates: RateTable) -> None:
    quote = rates.quote("JPY", "JPY", NOW)
    assert (quote.mid_rate, quote.applied_rate) == (Decimal(1), Decimal(1))


def test_p3_jpy_price_paid_in_usd(rates: RateTable, fees: FeeSchedule) -> None:
    # mid 1/150 = 0.006666666667 (10 digits); applied x 1.01 = 0.00673333333367 -> 0.006733333334.
    # 10000 JPY -> 67.33333334 -> 67.33 USD; card 2.5% = 1.68325 -> 1.68 (above the 0.50 minimum).
    breakdown = pay(rates, fees, money(10000, "JPY"), "USD", CARD)
    assert breakdown.rate is not None
    assert breakdown.rate.mid_rate == Decimal("0.006666666667")
    assert breakdown.rate.applied_rate == Decimal("0.006733333334")
    assert breakdown.converted == usd(6733)
    assert breakdown.fee == usd(168)
    assert breakdown.total == usd(6901)
    assert breakdown.settlement == money(10000, "JPY")


def test_p3_usd_price_paid_in_kwd(rates: RateTable, fees: FeeSchedule) -> None:
    # mid 0.3, applied 0.303. 33.83 USD -> 10.25049 -> 10.250 KWD; wallet 1% = 0.1025 -> 0.103
    # (half-up at the third decimal; the minimum is 0.30 USD x 0.3 = 0.090 KWD).
    breakdown = pay(rates, fees, usd(3383), "KWD", WALLET)
    assert breakdown.converted == money(10250, "KWD")
    assert breakdown.fee == money(103, "KWD")
    assert breakdown.total == money(10353, "KWD")
    assert breakdown.settlement == usd(3383)


def test_p3_eur_price_paid_in_gbp(rates: RateTable, fees: FeeSchedule) -> None:
    # mid 0.75 / 0.8 = 0.9375, applied 0.946875. 100.00 EUR -> 94.6875 -> 94.69 GBP;
    # bank 0.5% = 0.47345 -> the minimum 1.00 USD x 0.75 = 0.75 GBP.
    breakdown = pay(rates, fees, money(10000, "EUR"), "GBP", BANK)
    assert breakdown.rate is not None
    assert (breakdown.rate.mid_rate, breakdown.rate.applied_rate) == (Decimal("0.9375"), Decimal("0.946875"))
    assert breakdown.rate.usd_rate == Decimal("0.75")
    assert breakdown.converted == money(9469, "GBP")
    assert breakdown.fee == money(75, "GBP")
    assert breakdown.total == money(9544, "GBP")


# --- rounding: half-up, once per part ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "buyer_currency", "converted_minor"),
    [
        # 0 decimals: 3.00 USD x 151.5 = 454.5 -> 455 JPY (half-even would give 454).
        (usd(300), "JPY", 455),
        # 2 decimals: 4.80 EUR x 0.946875 = 4.545 -> 4.55 GBP (half-even: 4.54).
        (money(480, "EUR"), "GBP", 455),
        # 3 decimals: 1.50 USD x 0.303 = 0.4545 -> 0.455 KWD (half-even: 0.454).
        (usd(150), "KWD", 455),
        # Below the half: 0.0049 rounds away in each; 1.65 USD x 0.303 = 0.49995 -> 0.500 KWD.
        (usd(165), "KWD", 500),
    ],
)
def test_p3_converted_amount_is_rounded_half_up_once(
    rates: RateTable, fees: FeeSchedule, amount: Money, buyer_currency: str, converted_minor: int
) -> None:
    breakdown = pay(rates, fees, amount, buyer_currency, WALLET)
    assert breakdown.converted == money(converted_minor, buyer_currency)


@pytest.mark.parametrize(
    ("amount", "buyer_currency", "funding_type", "converted_minor", "fee_minor"),
    [
        # 0 decimals: 20.20 USD x 151.5 = 3060.3 -> 3060 JPY; card 2.5% = 76.5 -> 77 (minimum 75).
        (usd(2020), "JPY", CARD, 3060, 77),
        # 2 decimals: 24.16 EUR x 1.2625 = 30.502 -> 30.50 USD; wallet 1% = 0.305 -> 0.31 (minimum 0.30).
        (money(2416, "EUR"), "USD", WALLET, 3050, 31),
        # 3 decimals: 33.83 USD x 0.303 = 10.25049 -> 10.250 KWD; wallet 1% = 0.1025 -> 0.103.
        (usd(3383), "KWD", WALLET, 10250, 103),
    ],
)
def test_p3_fee_is_computed_on_the_rounded_converted_amount_and_rounded_half_up(  # noqa: PLR0917 - pytest passes fixtures and parameters by name
    rates: RateTable,
    fees: FeeSchedule,
    amount: Money,
    buyer_currency: str,
    funding_type: FundingType,
    converted_minor: int,
    fee_minor: int,
) -> None:
    breakdown = pay(rates, fees, amount, buyer_currency, funding_type)
    assert (breakdown.converted.amount_minor, breakdown.fee.amount_minor) == (converted_minor, fee_minor)
    assert breakdown.total.amount_minor == converted_minor + fee_minor


def test_p3_spread_is_applied_against_the_buyer(rates: RateTable, fees: FeeSchedule) -> None:
    # The buyer pays more than at mid in every direction: the spread is never in their favour.
    currencies = sorted(rates.currencies)
    for seller in currencies:
        for buyer in currencies:
            if seller == buyer:
                continue
            quote = rates.quote(seller, buyer, NOW)
            assert quote.applied_rate > quote.mid_rate
            assert quote.applied_rate == (quote.mid_rate * Decimal("1.01")).quantize(quote.applied_rate)
    # 1000.00 EUR at mid 1.25 is 1250.00 USD; at the applied 1.2625 the buyer pays 1262.50.
    assert pay(rates, fees, money(100000, "EUR"), "USD").converted == usd(126250)


def test_p3_quote_holds_until_it_expires(rates: RateTable, fees: FeeSchedule) -> None:
    quote = rates.quote("EUR", "USD", NOW)
    assert quote.taken_at == datetime(2026, 11, 15, 8, 0, tzinfo=UTC)
    assert quote.expires_at == NOW + timedelta(seconds=600)
    quote.check_valid(NOW + timedelta(seconds=599))  # still valid one second before
    with pytest.raises(QuoteExpired) as expired:
        quote.check_valid(quote.expires_at)
    assert isinstance(expired.value, CommandRefused)
    assert expired.value.code == "quote_expired"
    assert "expired at 2026-11-15T12:10:00Z" in expired.value.reason
    # Paying with it after expiry is refused the same way.
    with pytest.raises(QuoteExpired):
        price(money(100, "EUR"), "USD", CARD, quote, fees, NO_PROMOTIONS, NOW + timedelta(minutes=11), {})


def test_p3_a_quote_for_another_pair_or_none_is_refused(rates: RateTable, fees: FeeSchedule) -> None:
    eur = money(1000, "EUR")
    with pytest.raises(QuoteMismatch, match="needs a quote"):
        price(eur, "USD", CARD, None, fees, NO_PROMOTIONS, NOW, {})
    with pytest.raises(QuoteMismatch, match="EUR->USD quote, not EUR->GBP"):
        price(eur, "USD", CARD, rates.quote("EUR", "GBP", NOW), fees, NO_PROMOTIONS, NOW, {})
    with pytest.raises(QuoteMismatch, match="converts nothing"):
        price(eur, "EUR", CARD, rates.quote("EUR", "GBP", NOW), fees, NO_PROMOTIONS, NOW, {})
    with pytest.raises(CurrencyNotQuoted) as unquoted:
        rates.quote("USD", "CNY", NOW)
    assert unquoted.value.code == "currency_not_quoted"


def test_p3_a_conversion_beyond_what_money_holds_is_refused(rates: RateTable, fees: FeeSchedule) -> None:
    # 100 billion USD, the most an amount may be, is 15.15 trillion JPY: above the JPY bound.
    with pytest.raises(AmountTooLarge) as too_large:
        pay(rates, fees, usd(10**13), "JPY")
    assert too_large.value.code == "amount_too_large"


def test_p3_stored_breakdown_reads_back_equal(rates: RateTable, fees: FeeSchedule) -> None:
    breakdown = pay(rates, fees, money(10000, "JPY"), "KWD", CARD)
    assert Breakdown.from_dict(breakdown.to_dict()) == breakdown
    assert breakdown.to_dict()["rate"]["expires_at"] == "2026-11-15T12:10:00Z"


# --- fees ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("funding_type", "fee_minor"),
    [
        (CARD, 316),  # 2.5% of 126.25 = 3.15625 -> 3.16
        (WALLET, 126),  # 1% of 126.25 = 1.2625 -> 1.26
        (BANK, 100),  # 0.5% of 126.25 = 0.63125, below the 1.00 minimum
    ],
)
def test_p3_fee_by_funding_type_with_its_minimum(
    rates: RateTable, fees: FeeSchedule, funding_type: FundingType, fee_minor: int
) -> None:
    # 100.00 EUR x 1.2625 = 126.25 USD.
    breakdown = pay(rates, fees, money(10000, "EUR"), "USD", funding_type)
    assert breakdown.fee == usd(fee_minor)
    assert breakdown.total == usd(12625 + fee_minor)


def test_p3_fee_minimum_is_converted_from_usd_at_mid(rates: RateTable, fees: FeeSchedule) -> None:
    # 1.00 USD x 151.5 = 152 JPY; 1% = 1.52, below the minimum 0.30 USD x 150 = 45 JPY.
    assert pay(rates, fees, usd(100), "JPY", WALLET).fee == money(45, "JPY")


# --- promotions ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "funding_type", "waived"),
    [
        (datetime(2026, 11, 30, 23, 59, 59, tzinfo=UTC), CARD, False),  # the day before it starts
        (datetime(2026, 12, 1, tzinfo=UTC), CARD, True),  # from starts_at, inclusive
        (datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC), CARD, True),
        (datetime(2027, 1, 1, tzinfo=UTC), CARD, False),  # ends_at is the first instant it no longer applies
        (datetime(2026, 12, 10, tzinfo=UTC), WALLET, False),  # card payments only
    ],
)
def test_p3_fee_waiver_applies_within_its_dates_only(  # noqa: PLR0917 - pytest passes fixtures and parameters by name
    rates: RateTable,
    fees: FeeSchedule,
    promotions: Promotions,
    now: datetime,
    funding_type: FundingType,
    waived: bool,
) -> None:
    breakdown = pay(rates, fees, money(10000, "EUR"), "USD", funding_type, promotions=promotions, now=now)
    if waived:
        assert (breakdown.fee, breakdown.promotion_id) == (usd(0), "december-card-waiver")
        assert breakdown.total == usd(12625)
    else:
        assert breakdown.fee.amount_minor > 0
        assert breakdown.promotion_id is None


def test_p3_region_limited_promotion_needs_the_buyers_country(
    rates: RateTable, fees: FeeSchedule, promotions: Promotions
) -> None:
    during = datetime(2027, 3, 10, tzinfo=UTC)
    eur = money(10000, "EUR")
    assert pay(rates, fees, eur, "USD", promotions=promotions, now=during).promotion_id is None
    assert pay(rates, fees, eur, "USD", promotions=promotions, now=during, buyer_country="FR").promotion_id is None
    in_region = pay(rates, fees, eur, "USD", promotions=promotions, now=during, buyer_country="US")
    assert in_region.promotion_id == "spring-discount"


@pytest.mark.parametrize(
    ("used_minor", "discount_minor"),
    [
        (0, 500),  # 10% of 126.25 = 12.63, capped at 5.00 a payment
        (900, 300),  # 3.00 USD of the 12.00 budget left
        (1199, 1),  # one cent left
        (1200, None),  # spent: the promotion does not apply
        (1500, None),  # overshot (never by this code): still spent
    ],
)
def test_p3_discount_is_capped_and_limited_by_the_remaining_budget(
    rates: RateTable, fees: FeeSchedule, used_minor: int, discount_minor: int | None
) -> None:
    used = {DISCOUNT.id: usd(used_minor)}
    breakdown = pay(rates, fees, money(10000, "EUR"), "USD", CARD, promotions=Promotions((DISCOUNT,)), used=used)
    assert breakdown.fee == usd(316)  # a discount leaves the fee alone
    if discount_minor is None:
        assert (breakdown.promotion_id, breakdown.discount, breakdown.budget_charge) == (None, usd(0), None)
        assert breakdown.total == usd(12625 + 316)
        return
    assert breakdown.promotion_id == DISCOUNT.id
    assert breakdown.discount == breakdown.budget_charge == usd(discount_minor)
    assert breakdown.total == usd(12625 + 316 - discount_minor)


@pytest.mark.parametrize(
    ("buyer_currency", "used_minor", "discount_minor", "charge_minor"),
    [
        ("JPY", 0, 750, 500),  # 1515 JPY wanted, cap 5.00 x 150 = 750 JPY, which is 5.00 USD
        ("JPY", 1199, 1, 1),  # 0.01 USD x 150 = 1.5 -> 1 JPY (down); 1/150 USD = 0.0067 -> 0.01 (up)
        ("KWD", 1199, 3, 1),  # 0.01 USD x 0.3 = 0.003 KWD; back: exactly 0.01 USD
    ],
)
def test_p3_budget_limits_convert_down_and_charges_convert_up(  # noqa: PLR0917 - pytest passes fixtures and parameters by name
    rates: RateTable, fees: FeeSchedule, buyer_currency: str, used_minor: int, discount_minor: int, charge_minor: int
) -> None:
    breakdown = pay(
        rates, fees, usd(10000), buyer_currency, promotions=Promotions((DISCOUNT,)), used={DISCOUNT.id: usd(used_minor)}
    )
    assert breakdown.discount == money(discount_minor, buyer_currency)
    assert breakdown.budget_charge == usd(charge_minor)
    assert used_minor + charge_minor <= DISCOUNT.budget.amount_minor


def test_p3_the_promotion_saving_the_buyer_most_applies(rates: RateTable, fees: FeeSchedule) -> None:
    waiver = FeeWaiver(id="waiver", eligibility=DISCOUNT.eligibility)
    both = Promotions((waiver, DISCOUNT))
    # Card fee 3.16 against a 5.00 discount: the discount wins, the fee stays.
    big = pay(rates, fees, money(10000, "EUR"), "USD", CARD, promotions=both)
    assert (big.promotion_id, big.fee, big.discount) == (DISCOUNT.id, usd(316), usd(500))
    # 10.00 EUR -> 12.63 USD: fee 0.50 (minimum) against a 1.26 discount: the discount still wins.
    # With one cent of budget left the waiver (0.50) saves more than the discount (0.01).
    small = pay(rates, fees, money(1000, "EUR"), "USD", CARD, promotions=both, used={DISCOUNT.id: usd(1199)})
    assert (small.promotion_id, small.fee, small.discount) == ("waiver", usd(0), usd(0))


def test_p3_budget_reservation_refuses_to_overspend() -> None:
    # Two payments priced from the same row (9.00 used) each get 3.00; only the first may book it.
    row = CampaignBudget(promotion_id=DISCOUNT.id, used=usd(900))
    row.reserve(DISCOUNT, usd(300))
    assert row.used == usd(1200)
    assert remaining_budget(DISCOUNT, row.used) == usd(0)
    with pytest.raises(BudgetExhausted) as exhausted:
        row.reserve(DISCOUNT, usd(300))
    assert exhausted.value.code == "promotion_budget_exhausted"
    assert row.used == usd(1200)  # unchanged by the refusal
    assert reserve_budget(DISCOUNT, usd(1), usd(1199)) == usd(1200)
    with pytest.raises(ValueError, match="in USD"):
        reserve_budget(DISCOUNT, money(1, "EUR"), usd(0))


@settings(max_examples=60, deadline=None)
@given(
    orders=st.lists(
        st.tuples(st.integers(1, 10**6), st.sampled_from(["EUR", "GBP", "JPY", "KWD", "USD"])), max_size=20
    ),
    buyer_currency=st.sampled_from(["GBP", "JPY", "KWD", "USD"]),
)
def test_p3_property_campaign_never_overspends(
    rates: RateTable, fees: FeeSchedule, orders: list[tuple[int, str]], buyer_currency: str
) -> None:
    # Payments one after another, each priced against the row as it stands and then booked.
    row = CampaignBudget(promotion_id=DISCOUNT.id, used=usd(0))
    for amount_minor, seller_currency in orders:
        breakdown = pay(
            rates,
            fees,
            money(amount_minor, seller_currency),
            buyer_currency,
            promotions=Promotions((DISCOUNT,)),
            used={DISCOUNT.id: row.used},
        )
        if breakdown.budget_charge is not None:
            row.reserve(DISCOUNT, breakdown.budget_charge)  # never refused: it was priced from this row
        assert row.used.amount_minor <= DISCOUNT.budget.amount_minor


# --- properties: the rounding rule against an independent computation ---------------------------------


def _half_up(value: Fraction) -> int:
    """Round a non-negative fraction to the nearest integer, halves up."""
    return int(value + Fraction(1, 2))


def _independent(
    rates: RateTable, fees: FeeSchedule, amount: Money, buyer: str, funding_type: FundingType
) -> tuple[int, int]:
    """(converted, fee) in minor units, by the rule of the module docstring, in exact fractions."""
    quote = rates.quote(amount.currency, buyer, NOW)
    shift = Fraction(10) ** (minor_unit_exponent(buyer) - minor_unit_exponent(amount.currency))
    converted = _half_up(amount.amount_minor * Fraction(quote.applied_rate) * shift)
    rule = fees.rule(funding_type)
    to_buyer_minor = Fraction(10) ** (minor_unit_exponent(buyer) - 2)  # USD has 2 decimals
    minimum = rule.minimum.amount_minor * Fraction(quote.usd_rate) * to_buyer_minor
    fee = _half_up(max(converted * Fraction(rule.rate), minimum))
    return converted, fee


@settings(max_examples=200, deadline=None)
@given(
    amount_minor=st.integers(0, 10**10),  # 100 million USD: every conversion fits a Money
    seller=st.sampled_from(["EUR", "GBP", "JPY", "KWD", "USD"]),
    buyer=st.sampled_from(["EUR", "GBP", "JPY", "KWD", "USD"]),
    funding_type=st.sampled_from(list(FundingType)),
    used_minor=st.integers(0, 1300),
)
def test_p3_property_total_is_exact_sum_and_matches_the_rule(  # noqa: PLR0917 - pytest passes fixtures and parameters by name
    rates: RateTable,
    fees: FeeSchedule,
    amount_minor: int,
    seller: str,
    buyer: str,
    funding_type: FundingType,
    used_minor: int,
) -> None:
    amount = money(amount_minor, seller)
    breakdown = pay(
        rates,
        fees,
        amount,
        buyer,
        funding_type,
        promotions=Promotions((DISCOUNT,)),
        used={DISCOUNT.id: usd(used_minor)},
    )
    converted, fee, discount = breakdown.converted, breakdown.fee, breakdown.discount
    assert breakdown.total.amount_minor == converted.amount_minor + fee.amount_minor - discount.amount_minor
    assert breakdown.total.amount_minor >= 0
    assert breakdown.settlement == amount
    if seller == buyer:
        assert breakdown.total == amount
        return
    assert (converted.amount_minor, fee.amount_minor) == _independent(rates, fees, amount, buyer, funding_type)
    if breakdown.budget_charge is not None:
        assert breakdown.budget_charge.amount_minor <= min(DISCOUNT.cap.amount_minor, 1200 - used_minor)
        # The charge covers the discount: converted back at mid it is never less than what was given.
        assert breakdown.rate is not None
        charged_in_buyer = Fraction(breakdown.budget_charge.amount_minor, 100) * Fraction(breakdown.rate.usd_rate)
        assert charged_in_buyer >= Fraction(discount.amount_minor, 10 ** minor_unit_exponent(buyer))


# --- the data files -------------------------------------------------------------------------------------


def test_p3_shipped_rates_cover_every_region_currency() -> None:
    table = load_rates(DEFAULT_RATES_FILE)
    regions = tomllib.loads(REGIONS_FILE.read_text(encoding="utf-8"))["region"]
    region_currencies = {row["currency"] for row in regions}
    assert region_currencies | {"KWD", "BHD"} <= table.currencies
    assert table.spread == Decimal("0.015")
    for currency in sorted(table.currencies):
        quote = table.quote("USD", currency, NOW)
        assert quote.usd_rate == quote.mid_rate


def test_p3_shipped_fees_and_promotions_load() -> None:
    fees = load_fees(DEFAULT_FEES_FILE)
    assert set(fees.rules) == set(FundingType)
    promotions = load_promotions(DEFAULT_FEES_FILE)
    assert {row.kind for row in promotions.rows} == {"fee_waiver", "discount"}


def _edit(text: str, old: str, new: str) -> Callable[[], str]:
    assert old in text, old
    return lambda: text.replace(old, new, 1)


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (_edit(RATES_TOML, 'JPY = "150"', "JPY = 150.0"), "rates.JPY: must be a decimal string"),
        (_edit(RATES_TOML, 'JPY = "150"', 'JPY = "-150"'), "rates.JPY: '-150' is not a plain decimal"),
        (_edit(RATES_TOML, 'JPY = "150"', 'JPY = "0"'), "rates.JPY: must be greater than zero"),
        (_edit(RATES_TOML, 'JPY = "150"', 'XTS = "1"'), "rates.XTS: currency 'XTS'"),
        (_edit(RATES_TOML, 'JPY = "150"', 'USD = "1"'), "rates.USD: is the base"),
        (_edit(RATES_TOML, 'spread = "0.01"\n', ""), "missing key 'spread'"),
        (_edit(RATES_TOML, 'spread = "0.01"', 'spread = "1.5"'), "spread: is a fraction"),
        (_edit(RATES_TOML, 'base = "USD"', 'base = "EUR"'), "base: must be 'USD'"),
        (_edit(RATES_TOML, "quote_valid_seconds = 600", "quote_valid_seconds = 0"), "quote_valid_seconds: must be"),
        (_edit(RATES_TOML, "2026-11-15T08:00:00Z", '"2026-11-15T08:00:00Z"'), "taken_at: must be a TOML date-time"),
        (_edit(RATES_TOML, "2026-11-15T08:00:00Z", "2026-11-15T08:00:00+09:00"), "taken_at: must be in UTC"),
        (_edit(RATES_TOML, "[rates]", "rate_table = 1\n[rates]"), "unknown key 'rate_table'"),
        (lambda: "base = ", "is not valid TOML"),
    ],
)
def test_p3_bad_rates_file_names_the_key(tmp_path: Path, make: Callable[[], str], expected: str) -> None:
    path = tmp_path / "rates.toml"
    path.write_text(make(), encoding="utf-8")
    with pytest.raises(PricingDataError) as error:
        load_rates(path)
    assert expected in str(error.value)
    assert str(error.value).startswith(str(path))


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (_edit(FEES_TOML, "[fee.card]", "[fee.cards]"), "fee: unknown key 'cards'"),
        (_edit(FEES_TOML, 'rate = "0.025"', "rate = 0.025"), "fee.card.rate: must be a decimal string"),
        (_edit(FEES_TOML, 'minimum = "0.30"', 'minimum = "0.305"'), "fee.wallet.minimum: '0.305' has 3 decimals"),
        (
            _edit(FEES_TOML, 'kind = "discount"', 'kind = "cashback"'),
            "promotion row 2 (id 'spring-discount'): kind must be one of",
        ),
        (
            _edit(FEES_TOML, 'budget = "12.00"\n', ""),
            "promotion row 2 (id 'spring-discount'): missing key 'budget'",
        ),
        (
            _edit(FEES_TOML, 'kind = "fee_waiver"', 'kind = "fee_waiver"\ncap = "1.00"'),
            "promotion row 1 (id 'december-card-waiver'): a fee waiver takes no 'cap'",
        ),
        (_edit(FEES_TOML, 'cap = "5.00"', 'cap = "50.00"'), "cap 50.00 USD is above budget 12.00 USD"),
        (
            _edit(FEES_TOML, "ends_at = 2027-01-01T00:00:00Z", "ends_at = 2026-11-01T00:00:00Z"),
            "promotion row 1 (id 'december-card-waiver'): ends_at 2026-11-01T00:00:00Z must be after",
        ),
        (_edit(FEES_TOML, 'id = "spring-discount"', 'id = "december-card-waiver"'), "listed twice: rows 1 and 2"),
        (_edit(FEES_TOML, '["JP", "US"]', '["JP", "jp"]'), "buyer region 'jp' is not an upper-case ISO 3166-1"),
        (_edit(FEES_TOML, '["card"]', '["cash"]'), "funding_types: 'cash' is not one of"),
        (_edit(FEES_TOML, '["card"]', "[]"), "funding_types must be a non-empty list"),
        (_edit(FEES_TOML, 'id = "spring-discount"', 'id = "Spring Discount"'), "id must be lower-case letters"),
    ],
)
def test_p3_bad_fees_file_names_the_row(tmp_path: Path, make: Callable[[], str], expected: str) -> None:
    path = tmp_path / "fees.toml"
    path.write_text(make(), encoding="utf-8")
    for load in (load_fees, load_promotions):  # either loader checks the whole file
        with pytest.raises(PricingDataError) as error:
            load(path)
        assert expected in str(error.value)


def test_p3_quote_reads_back_from_its_dict(rates: RateTable) -> None:
    quote = rates.quote("JPY", "KWD", NOW)
    assert Quote.from_dict(quote.to_dict()) == quote
