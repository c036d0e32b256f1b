"""Payments P3: cross-border pricing, as pure functions of a rate table, a fee schedule and promotions.

Nothing here touches Kafka, the network or a database; the only I/O is reading the two data
files (``services/payment/data/rates.toml`` and ``fees.toml``) once at start.

Errors::

    CommandRefused (shared.errors)   answered to the command with its code and reason
    ├── CurrencyNotQuoted   currency_not_quoted: the rate table has no rate for a currency
    ├── QuoteExpired        quote_expired: the buyer's quote is past its expires_at
    ├── QuoteMismatch       quote_mismatch: the quote is for another currency pair, or missing
    ├── AmountTooLarge      amount_too_large: a converted amount exceeds what a Money may carry
    └── BudgetExhausted     promotion_budget_exhausted: a reservation would overspend a campaign
    PricingDataError (ValueError)    a data file breaks a rule; raised at start, naming the key or row

**Rates.** The table holds mid rates against USD (1 USD = X). A quote from A to B prices an
amount in A (the seller's price) in B (the buyer's currency): the mid rate is
``rate[B] / rate[A]`` and the applied rate is ``mid x (1 + spread)``, so the spread always
works against the buyer, who pays in B. Both are rounded half-up to 10 significant digits
and stored in the :class:`Quote` exactly, so a payment re-priced from its stored quote (a
refund at the original rate, P6) gives the same figures. A quote also carries the mid rate
of USD in B (``usd_rate``) from the same table: fee minimums and promotion amounts are in
USD and are converted with it. Same currency: rate 1, no spread. A quote holds from the
moment it is given until ``expires_at`` (given + ``quote_valid_seconds``), exclusive; the
table's ``taken_at`` travels in the quote so the breakdown says how old the rate was.

**Which payments pay a fee.** Cross-border ones: the buyer's currency differs from the
seller's (the currency decides, not the country: euro payments between euro countries are
domestic, as EU rules require). A domestic payment is its price: no conversion, no fee, no
promotion (promotions are part of cross-border pricing), ``rate`` None.

**The rounding rule.** Every amount the buyer sees is rounded once, to the buyer
currency's minor units, and the total is the exact sum of those rounded parts:

1. ``converted`` = price x applied rate, rounded half-up (ROUND_HALF_UP);
2. ``fee`` = max(rounded converted x fee rate, USD minimum x usd_rate), rounded half-up
   (zero under a fee waiver); it is computed on the rounded ``converted``, so a buyer can
   check it from the receipt;
3. ``discount`` = rounded converted x discount rate, rounded half-up, then lowered to the
   per-payment cap and to the campaign's remaining budget, each converted at ``usd_rate``
   and rounded *down* (a limit is never exceeded by rounding), and to converted + fee;
4. ``total`` = converted + fee - discount, exactly, in minor units: never rounded again,
   never negative.

**Settlement.** The seller receives the price, in the seller's currency, exactly: the
spread and the fee are platform revenue and the discount is the platform's cost.

**Promotions.** A promotion applies between ``starts_at`` (inclusive) and ``ends_at``
(exclusive), to its funding types and buyer regions when it lists any (a region-limited
promotion never applies when the buyer's country is not given). At most one applies to a
payment: the one that saves the buyer most, the first listed on a tie; one that would save
nothing (a spent budget) does not apply. A fee waiver sets the fee to zero and has no
budget. A discount spends its campaign's budget (USD): what it spends is the discount
converted back at ``usd_rate`` and rounded *up* to cents (``Breakdown.budget_charge``), so the
recorded use is never less than what was given.

**Budgets never overspend.** :func:`price` only reads the campaign's used budget; the caller
then books the charge with :func:`reserve_budget` (or :meth:`CampaignBudget.reserve`), which
refuses with :class:`BudgetExhausted` if it would exceed the budget. The payment service
keeps each campaign's used budget as a versioned aggregate (:class:`CampaignBudget`, one row
per campaign, written with its version checked): two payments racing for the last of a
budget both read the same version, only the first commit wins, and the other's batch is
re-run, re-priced against the new used amount, and gets what is left, or no discount.

Money is never a float: amounts are :class:`~contracts.money.Money` (integer minor units) and
every step in between is a :class:`~decimal.Decimal` computed exactly (a context that traps
inexact results), rounded only where the rule above says.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import (
    ROUND_CEILING,
    ROUND_FLOOR,
    ROUND_HALF_UP,
    Context,
    Decimal,
    Inexact,
    InvalidOperation,
    Overflow,
)
from enum import StrEnum
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar

import pycountry

from contracts.funding_sources import FundingType
from contracts.money import CURRENCIES, Money, max_amount_minor, minor_unit_exponent
from shared.errors import CommandRefused

DATA_DIR = Path(__file__).resolve().parents[1] / "data"
DEFAULT_RATES_FILE = DATA_DIR / "rates.toml"
"""The rate table the payment service ships with."""
DEFAULT_FEES_FILE = DATA_DIR / "fees.toml"
"""The fee schedule and promotions the payment service ships with."""
_PROJECT_ROOT = DATA_DIR.parents[2]  # errors show paths relative to it, as an operator searches the repo

BASE_CURRENCY = "USD"
"""Rates are quoted against it; fee minimums and promotion amounts are in it."""
RATE_DIGITS = 10
"""Significant digits a quoted rate keeps (rounded half-up)."""

# Exact arithmetic: 60 digits hold any product here (an amount has at most 14 digits, a rate
# 10, a fraction a few), and Inexact is trapped so a lost digit is a crash, not a wrong price.
_EXACT = Context(prec=60, rounding=ROUND_HALF_UP, traps=[Inexact, InvalidOperation, Overflow])
# Divisions (cross rates, a discount back to USD) cannot be exact; they are computed at 60
# digits and then rounded by the rule that applies to them.
_WIDE = Context(prec=60, rounding=ROUND_HALF_UP, traps=[InvalidOperation, Overflow])
_ONE = Decimal(1)
_CURRENCY_SET = frozenset(CURRENCIES)
# Plain digits with an optional fraction: refuses signs, exponents, NaN and blanks that Decimal() would take.
_DECIMAL_STRING = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_PROMOTION_ID = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_PROMOTION_ID_MAX = 64


# --- errors -----------------------------------------------------------------------------------------


class CurrencyNotQuoted(CommandRefused):
    """A payment needs a rate for a currency the rate table does not list."""

    def __init__(self, currency: str, source: str) -> None:
        super().__init__("currency_not_quoted", f"no exchange rate for {currency} (see {source})")
        self.currency = currency


class QuoteExpired(CommandRefused):
    """The buyer's quote is no longer valid: a new quote (at today's rate) is needed."""

    def __init__(self, quote: Quote, now: datetime) -> None:
        super().__init__(
            "quote_expired",
            f"the {quote.from_currency}->{quote.to_currency} quote expired at {_utc_text(quote.expires_at)} "
            f"(it is now {_utc_text(now)}); ask for a new quote",
        )
        self.expires_at = quote.expires_at


class QuoteMismatch(CommandRefused):
    """The quote given is for another currency pair than the payment, or a conversion has no quote."""

    def __init__(self, reason: str) -> None:
        super().__init__("quote_mismatch", reason)


class AmountTooLarge(CommandRefused):
    """A converted amount, fee or total is above the most a Money may carry (100 billion major units)."""

    def __init__(self, what: str, amount_minor: int, currency: str) -> None:
        super().__init__(
            "amount_too_large",
            f"the {what} {amount_minor} {currency} minor units is above {max_amount_minor(currency)}, "
            "the most an amount may be",
        )


class BudgetExhausted(CommandRefused):
    """Booking a discount would take a campaign past its budget; the payment must be re-priced."""

    def __init__(self, promotion_id: str, charge: Money, remaining: Money) -> None:
        super().__init__(
            "promotion_budget_exhausted",
            f"promotion {promotion_id!r} has {remaining} of its budget left, less than the {charge} asked",
        )
        self.promotion_id = promotion_id


class PricingDataError(ValueError):
    """A rates or fees file breaks a rule; raised at start, before the service prices anything."""

    def __init__(self, source: str, where: str | None, rule: str) -> None:
        super().__init__(f"{source}: {rule}" if where is None else f"{source}: {where}: {rule}")
        self.source = source
        self.where = where
        self.rule = rule


class _RuleBroken(Exception):
    """A check on one key failed; the loader adds the file name."""

    def __init__(self, where: str, rule: str) -> None:
        super().__init__(f"{where}: {rule}")
        self.where = where
        self.rule = rule


# --- rates and quotes -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Quote:
    """A rate given to a buyer: prices amounts in ``from_currency`` in ``to_currency`` until ``expires_at``.

    ``mid_rate`` and ``applied_rate`` are units of ``to_currency`` per unit of ``from_currency``;
    ``applied_rate`` includes the spread against the buyer (who pays in ``to_currency``).
    ``usd_rate`` is 1 USD in ``to_currency`` at the mid rate, for amounts set in USD.
    """

    from_currency: str
    to_currency: str
    mid_rate: Decimal
    applied_rate: Decimal
    usd_rate: Decimal
    taken_at: datetime
    expires_at: datetime

    def __post_init__(self) -> None:
        for currency in (self.from_currency, self.to_currency):
            minor_unit_exponent(currency)  # ValueError naming the code if it is not money
        for name in ("mid_rate", "applied_rate", "usd_rate"):
            value = getattr(self, name)
            if not isinstance(value, Decimal) or not value.is_finite() or value <= 0:
                raise ValueError(f"quote {name} must be a positive Decimal, not {value!r}")
        if self.applied_rate < self.mid_rate:
            raise ValueError(f"quote applied_rate {self.applied_rate} is below mid_rate {self.mid_rate}")
        if self.is_identity and (self.mid_rate != 1 or self.applied_rate != 1):
            raise ValueError(f"a {self.from_currency}->{self.to_currency} quote has rate 1, no spread")
        _require_aware(self.taken_at, "taken_at")
        _require_aware(self.expires_at, "expires_at")

    @property
    def is_identity(self) -> bool:
        """Whether the quote is for one currency to itself (rate 1)."""
        return self.from_currency == self.to_currency

    def is_valid(self, now: datetime) -> bool:
        """Whether the quote still holds at ``now`` (it holds until ``expires_at``, exclusive)."""
        return _require_aware(now, "now") < self.expires_at

    def check_valid(self, now: datetime) -> None:
        """Raise :class:`QuoteExpired` if the quote no longer holds at ``now``."""
        if not self.is_valid(now):
            raise QuoteExpired(self, now)

    def to_dict(self) -> dict[str, str]:
        """A JSON-ready form: rates as decimal strings, times as ISO 8601 UTC."""
        return {
            "from_currency": self.from_currency,
            "to_currency": self.to_currency,
            "mid_rate": _decimal_text(self.mid_rate),
            "applied_rate": _decimal_text(self.applied_rate),
            "usd_rate": _decimal_text(self.usd_rate),
            "taken_at": _utc_text(self.taken_at),
            "expires_at": _utc_text(self.expires_at),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, str]) -> Quote:
        """The quote :meth:`to_dict` wrote (a stored payment's rate, for a refund at the original rate)."""
        return cls(
            from_currency=data["from_currency"],
            to_currency=data["to_currency"],
            mid_rate=Decimal(data["mid_rate"]),
            applied_rate=Decimal(data["applied_rate"]),
            usd_rate=Decimal(data["usd_rate"]),
            taken_at=datetime.fromisoformat(data["taken_at"]),
            expires_at=datetime.fromisoformat(data["expires_at"]),
        )


@dataclass(frozen=True, slots=True)
class RateTable:
    """Mid rates against USD (1 USD = X), when they were taken, how long a quote holds, the spread."""

    taken_at: datetime
    quote_valid: timedelta
    spread: Decimal
    # 1 USD = rates[C] units of C, USD itself included as 1. Read-only; left out of the hash.
    rates: Mapping[str, Decimal] = field(hash=False)
    source: str = "rates"

    @property
    def currencies(self) -> frozenset[str]:
        """Every currency the table can quote."""
        return frozenset(self.rates)

    def mid_rate(self, from_currency: str, to_currency: str) -> Decimal:
        """Units of ``to_currency`` per unit of ``from_currency`` at mid, via USD, to 10 significant digits."""
        if from_currency == to_currency:
            self._rate(from_currency)  # still refuses a currency the table does not know
            return _ONE
        return _significant(_WIDE.divide(self._rate(to_currency), self._rate(from_currency)))

    def quote(self, from_currency: str, to_currency: str, now: datetime) -> Quote:
        """A quote for pricing ``from_currency`` amounts in ``to_currency``, given at ``now``.

        Same currency: rate 1, no spread. Otherwise the applied rate is mid x (1 + spread).
        :class:`CurrencyNotQuoted` for a currency the table does not list.
        """
        now = _require_aware(now, "now").astimezone(UTC)
        mid = self.mid_rate(from_currency, to_currency)
        applied = mid if from_currency == to_currency else _significant(_EXACT.multiply(mid, _ONE + self.spread))
        return Quote(
            from_currency=from_currency,
            to_currency=to_currency,
            mid_rate=mid,
            applied_rate=applied,
            usd_rate=_significant(self._rate(to_currency)),
            taken_at=self.taken_at,
            expires_at=now + self.quote_valid,
        )

    def _rate(self, currency: str) -> Decimal:
        rate = self.rates.get(currency)
        if rate is None:
            raise CurrencyNotQuoted(currency, self.source)
        return rate


# --- fees and promotions ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FeeRule:
    """The cross-border fee of one funding type: ``rate`` of the converted amount, at least ``minimum``."""

    funding_type: FundingType
    rate: Decimal
    minimum: Money  # USD


@dataclass(frozen=True, slots=True)
class FeeSchedule:
    """The cross-border fee rule of every funding type."""

    rules: Mapping[FundingType, FeeRule] = field(hash=False)

    def rule(self, funding_type: FundingType) -> FeeRule:
        """The rule for ``funding_type`` (the loader guarantees one per type)."""
        return self.rules[FundingType(funding_type)]


class PromotionKind(StrEnum):
    FEE_WAIVER = "fee_waiver"
    DISCOUNT = "discount"


@dataclass(frozen=True, slots=True)
class Eligibility:
    """When and to which payments a promotion applies; None means no restriction."""

    starts_at: datetime
    ends_at: datetime
    funding_types: frozenset[FundingType] | None = None
    buyer_regions: frozenset[str] | None = None

    def admits(self, now: datetime, funding_type: FundingType, buyer_country: str | None) -> bool:
        """Whether a payment at ``now`` from ``funding_type`` by a buyer of ``buyer_country`` qualifies."""
        if not self.starts_at <= now < self.ends_at:
            return False
        if self.funding_types is not None and funding_type not in self.funding_types:
            return False
        return self.buyer_regions is None or buyer_country in self.buyer_regions


@dataclass(frozen=True, slots=True)
class FeeWaiver:
    """A campaign that sets the cross-border fee to zero while it runs; it has no budget."""

    kind: ClassVar[PromotionKind] = PromotionKind.FEE_WAIVER
    id: str
    eligibility: Eligibility


@dataclass(frozen=True, slots=True)
class Discount:
    """A campaign that takes ``rate`` off the converted amount, at most ``cap`` a payment and ``budget`` in all."""

    kind: ClassVar[PromotionKind] = PromotionKind.DISCOUNT
    id: str
    eligibility: Eligibility
    rate: Decimal
    cap: Money  # USD, per payment
    budget: Money  # USD, all payments together


Promotion = FeeWaiver | Discount


@dataclass(frozen=True, slots=True)
class Promotions:
    """The campaigns, in the order of the file (which breaks ties)."""

    rows: tuple[Promotion, ...] = ()

    def get(self, promotion_id: str) -> Promotion:
        """The campaign with this id; KeyError if there is none."""
        for row in self.rows:
            if row.id == promotion_id:
                return row
        raise KeyError(promotion_id)

    def eligible(self, now: datetime, funding_type: FundingType, buyer_country: str | None) -> tuple[Promotion, ...]:
        """The campaigns a payment qualifies for, budget aside, in file order."""
        return tuple(row for row in self.rows if row.eligibility.admits(now, funding_type, buyer_country))


# --- budgets ----------------------------------------------------------------------------------------


def remaining_budget(promotion: Discount, used: Money) -> Money:
    """What is left of the campaign's budget (USD); zero once spent, even if ``used`` overshoots."""
    _require_usd(used, "used budget")
    return Money(amount_minor=max(promotion.budget.amount_minor - used.amount_minor, 0), currency=BASE_CURRENCY)


def reserve_budget(promotion: Discount, charge: Money, used: Money) -> Money:
    """The campaign's used budget after booking ``charge``; :class:`BudgetExhausted` if it would overspend.

    Pure: the caller stores the result on the campaign's versioned row, so of two payments
    that read the same row only the first write survives (see the module docstring).
    """
    _require_usd(charge, "budget charge")
    remaining = remaining_budget(promotion, used)
    if charge.amount_minor > remaining.amount_minor:
        raise BudgetExhausted(promotion.id, charge, remaining)
    return used + charge


@dataclass(slots=True)
class CampaignBudget:
    """One discount campaign's used budget: the row the payment service keeps, versioned, per campaign."""

    promotion_id: str
    used: Money  # USD

    def reserve(self, promotion: Discount, charge: Money) -> None:
        """Book ``charge`` against the budget, or raise :class:`BudgetExhausted` and change nothing."""
        if promotion.id != self.promotion_id:
            raise ValueError(f"budget of {self.promotion_id!r} cannot book a charge of {promotion.id!r}")
        self.used = reserve_budget(promotion, charge, self.used)

    def release(self, charge: Money) -> None:
        """Give back what a payment booked and did not spend (it failed, or paid from another type)."""
        _require_usd(charge, "budget charge")
        self.used = Money(amount_minor=max(self.used.amount_minor - charge.amount_minor, 0), currency=BASE_CURRENCY)


# --- the breakdown ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Breakdown:
    """Everything a payment costs and pays, as the payment carries it (P3).

    ``amount`` and ``settlement`` are in the seller's currency; ``converted``, ``fee``,
    ``discount`` and ``total`` in the buyer's, with ``total == converted + fee - discount``
    exactly; ``budget_charge`` (USD) is what a discount spent of its campaign's budget.
    """

    amount: Money
    converted: Money
    rate: Quote | None
    fee: Money
    discount: Money
    total: Money
    settlement: Money
    funding_type: FundingType
    promotion_id: str | None = None
    budget_charge: Money | None = None

    def __post_init__(self) -> None:
        buyer = self.total.currency
        if {self.converted.currency, self.fee.currency, self.discount.currency} != {buyer}:
            raise ValueError(f"converted, fee, discount and total must all be in {buyer}")
        if self.settlement.currency != self.amount.currency:
            raise ValueError("settlement must be in the seller's currency, that of the amount")
        expected = self.converted.amount_minor + self.fee.amount_minor - self.discount.amount_minor
        if self.total.amount_minor != expected:
            raise ValueError(f"total {self.total} is not converted + fee - discount ({expected} minor units)")

    @classmethod
    def domestic(cls, amount: Money, funding_type: FundingType) -> Breakdown:
        """A price paid in its own currency: nothing converted, no fee, no promotion."""
        zero = Money(amount_minor=0, currency=amount.currency)
        return cls(amount, amount, None, zero, zero, amount, amount, FundingType(funding_type))

    @property
    def buyer_currency(self) -> str:
        return self.total.currency

    @property
    def seller_currency(self) -> str:
        return self.amount.currency

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form: Money as ``{"amount_minor", "currency"}``, the rate as :meth:`Quote.to_dict`."""
        return {
            "amount": self.amount.model_dump(),
            "converted": self.converted.model_dump(),
            "rate": None if self.rate is None else self.rate.to_dict(),
            "fee": self.fee.model_dump(),
            "discount": self.discount.model_dump(),
            "total": self.total.model_dump(),
            "settlement": self.settlement.model_dump(),
            "funding_type": self.funding_type.value,
            "promotion_id": self.promotion_id,
            "budget_charge": None if self.budget_charge is None else self.budget_charge.model_dump(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Breakdown:
        """The breakdown :meth:`to_dict` wrote (payment history, refunds)."""
        return cls(
            amount=Money.model_validate(data["amount"]),
            converted=Money.model_validate(data["converted"]),
            rate=None if data["rate"] is None else Quote.from_dict(data["rate"]),
            fee=Money.model_validate(data["fee"]),
            discount=Money.model_validate(data["discount"]),
            total=Money.model_validate(data["total"]),
            settlement=Money.model_validate(data["settlement"]),
            funding_type=FundingType(data["funding_type"]),
            promotion_id=data["promotion_id"],
            budget_charge=None if data["budget_charge"] is None else Money.model_validate(data["budget_charge"]),
        )


@dataclass(frozen=True, slots=True)
class _Offer:
    """What one promotion would do to a payment."""

    promotion_id: str
    fee: Money
    discount: Money
    budget_charge: Money | None
    saving: int  # minor units of the buyer's currency the promotion takes off the total


def price(  # noqa: PLR0917 - the inputs of a breakdown; callers name them
    amount: Money,
    buyer_currency: str,
    funding_type: FundingType,
    quote: Quote | None,
    fees: FeeSchedule,
    promotions: Promotions,
    now: datetime,
    budget_used: Mapping[str, Money],
    *,
    buyer_country: str | None = None,
) -> Breakdown:
    """The breakdown of a payment of ``amount`` (the order price, seller's currency) by a buyer paying in
    ``buyer_currency``, by the rules of the module docstring.

    ``quote`` must be a quote from ``amount.currency`` to ``buyer_currency`` still valid at
    ``now`` (:class:`QuoteExpired`, :class:`QuoteMismatch`); a domestic payment takes None or
    the identity quote. ``budget_used`` maps a campaign id to what it has spent (USD; absent
    means nothing). ``buyer_country`` is needed only for region-limited promotions.
    """
    now = _require_aware(now, "now")
    funding_type = FundingType(funding_type)
    minor_unit_exponent(buyer_currency)  # ValueError naming the code if it is not money
    zero = Money(amount_minor=0, currency=buyer_currency)
    if amount.currency == buyer_currency:
        _check_domestic_quote(quote, buyer_currency, now)
        return Breakdown.domestic(amount, funding_type)
    quote = _check_quote(quote, amount.currency, buyer_currency, now)
    converted = _convert(amount, quote)  # step 1
    fee = _fee(converted, fees.rule(funding_type), quote)  # step 2
    offers = (
        _offer(promotion, converted, fee, quote, budget_used)
        for promotion in promotions.eligible(now, funding_type, buyer_country)
    )
    # max() keeps the first of equal savings: the file order breaks ties.
    best = max((offer for offer in offers if offer is not None and offer.saving > 0), default=None, key=_saving)
    if best is not None:  # step 3
        fee, discount, promotion_id, charge = best.fee, best.discount, best.promotion_id, best.budget_charge
    else:
        discount, promotion_id, charge = zero, None, None
    total = _money(converted.amount_minor + fee.amount_minor - discount.amount_minor, buyer_currency, "total")  # step 4
    return Breakdown(
        amount=amount,
        converted=converted,
        rate=quote,
        fee=fee,
        discount=discount,
        total=total,
        settlement=amount,  # the seller receives the price: spread and fee are platform revenue
        funding_type=funding_type,
        promotion_id=promotion_id,
        budget_charge=charge,
    )


def _saving(offer: _Offer) -> int:
    return offer.saving


def _check_domestic_quote(quote: Quote | None, currency: str, now: datetime) -> None:
    if quote is None:
        return
    if not quote.is_identity or quote.to_currency != currency:
        raise QuoteMismatch(
            f"a {currency} payment to a {currency} seller converts nothing; "
            f"a {quote.from_currency}->{quote.to_currency} quote does not belong to it"
        )
    quote.check_valid(now)


def _check_quote(quote: Quote | None, seller_currency: str, buyer_currency: str, now: datetime) -> Quote:
    if quote is None:
        raise QuoteMismatch(f"paying a {seller_currency} price in {buyer_currency} needs a quote; none was given")
    if (quote.from_currency, quote.to_currency) != (seller_currency, buyer_currency):
        raise QuoteMismatch(
            f"paying a {seller_currency} price in {buyer_currency} needs a {seller_currency}->{buyer_currency} "
            f"quote, not {quote.from_currency}->{quote.to_currency}"
        )
    quote.check_valid(now)
    return quote


def _convert(amount: Money, quote: Quote) -> Money:
    """Step 1: the price at the applied rate, rounded half-up to the buyer currency's minor units."""
    exact = _EXACT.multiply(amount.decimal, quote.applied_rate)
    return _money(_to_minor(exact, quote.to_currency, ROUND_HALF_UP), quote.to_currency, "converted amount")


def _fee(converted: Money, rule: FeeRule, quote: Quote) -> Money:
    """Step 2: the fee rate of the rounded converted amount, at least the USD minimum converted at mid."""
    proportional = _EXACT.multiply(converted.decimal, rule.rate)
    minimum = _EXACT.multiply(rule.minimum.decimal, quote.usd_rate)
    # Rounding is monotone, so rounding the larger equals the larger of the rounded: one rounding.
    return _money(_to_minor(max(proportional, minimum), converted.currency, ROUND_HALF_UP), converted.currency, "fee")


def _offer(
    promotion: Promotion, converted: Money, fee: Money, quote: Quote, budget_used: Mapping[str, Money]
) -> _Offer | None:
    zero = Money(amount_minor=0, currency=converted.currency)
    if isinstance(promotion, FeeWaiver):
        return _Offer(promotion.id, fee=zero, discount=zero, budget_charge=None, saving=fee.amount_minor)
    used = budget_used.get(promotion.id, Money(amount_minor=0, currency=BASE_CURRENCY))
    return _discount_offer(promotion, converted, fee, quote, remaining_budget(promotion, used))


def _discount_offer(promotion: Discount, converted: Money, fee: Money, quote: Quote, remaining: Money) -> _Offer | None:
    """Step 3: the discount, lowered to the cap, the remaining budget and converted + fee."""
    currency = converted.currency
    wanted = _to_minor(_EXACT.multiply(converted.decimal, promotion.rate), currency, ROUND_HALF_UP)
    # Limits set in USD are converted at mid and rounded down, so rounding never lifts a limit.
    cap = _to_minor(_EXACT.multiply(promotion.cap.decimal, quote.usd_rate), currency, ROUND_FLOOR)
    budget = _to_minor(_EXACT.multiply(remaining.decimal, quote.usd_rate), currency, ROUND_FLOOR)
    minor = min(wanted, cap, budget, converted.amount_minor + fee.amount_minor)
    if minor <= 0:
        return None
    discount = Money(amount_minor=minor, currency=currency)
    # Back to USD rounded up: the budget records at least what was given. Since discount <= remaining x rate
    # and remaining is whole cents, the charge cannot exceed remaining (nor the cap, by the same argument).
    charge_minor = _to_minor(_WIDE.divide(discount.decimal, quote.usd_rate), BASE_CURRENCY, ROUND_CEILING)
    assert charge_minor <= min(remaining.amount_minor, promotion.cap.amount_minor), (charge_minor, remaining)
    charge = Money(amount_minor=charge_minor, currency=BASE_CURRENCY)
    return _Offer(promotion.id, fee=fee, discount=discount, budget_charge=charge, saving=minor)


# --- small helpers ----------------------------------------------------------------------------------


def _to_minor(value: Decimal, currency: str, rounding: str) -> int:
    """``value`` (major units) as whole minor units of ``currency``, rounded as asked."""
    scaled = _EXACT.scaleb(value, Decimal(minor_unit_exponent(currency)))
    return int(scaled.quantize(_ONE, rounding=rounding, context=_WIDE))


def _money(amount_minor: int, currency: str, what: str) -> Money:
    assert amount_minor >= 0, (what, amount_minor)
    if amount_minor > max_amount_minor(currency):
        raise AmountTooLarge(what, amount_minor, currency)
    return Money(amount_minor=amount_minor, currency=currency)


def _significant(value: Decimal) -> Decimal:
    """``value`` rounded half-up to :data:`RATE_DIGITS` significant digits, without trailing zeros."""
    quantum = _ONE.scaleb(value.adjusted() - RATE_DIGITS + 1)
    return value.quantize(quantum, rounding=ROUND_HALF_UP, context=_WIDE).normalize(_WIDE)


def _decimal_text(value: Decimal) -> str:
    """Plain notation, never an exponent ("150", not "1.5E+2")."""
    return format(value, "f")


def _utc_text(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _require_aware(moment: datetime, name: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (UTC), not {moment!r}")
    return moment


def _require_usd(money: Money, what: str) -> None:
    if money.currency != BASE_CURRENCY:
        raise ValueError(f"a {what} is in {BASE_CURRENCY}, not {money.currency}")


# --- loading ----------------------------------------------------------------------------------------

_RATES_KEYS = frozenset({"base", "taken_at", "quote_valid_seconds", "spread", "rates"})
_FEE_KEYS = frozenset({"rate", "minimum"})
_PROMOTION_KEYS = frozenset({"id", "kind", "starts_at", "ends_at"})
_PROMOTION_OPTIONAL = frozenset({"funding_types", "buyer_regions"})
_DISCOUNT_KEYS = frozenset({"rate", "cap", "budget"})


def load_rates(path: Path = DEFAULT_RATES_FILE) -> RateTable:
    """Read and check a rates file; :class:`PricingDataError` naming the key at the first broken rule."""
    source = _display(path)
    document = _read_toml(path, source)
    try:
        return _parse_rates(document, source)
    except _RuleBroken as broken:
        raise PricingDataError(source, broken.where, broken.rule) from None


def load_fees(path: Path = DEFAULT_FEES_FILE) -> FeeSchedule:
    """The fee schedule of a fees file, the whole file checked (promotions too)."""
    return _load_fee_file(path)[0]


def load_promotions(path: Path = DEFAULT_FEES_FILE) -> Promotions:
    """The promotions of a fees file, the whole file checked (fees too)."""
    return _load_fee_file(path)[1]


@cache
def default_rates() -> RateTable:
    """The shipped rate table, read once per process."""
    return load_rates()


@cache
def default_fees() -> FeeSchedule:
    """The shipped fee schedule, read once per process."""
    return load_fees()


@cache
def default_promotions() -> Promotions:
    """The shipped promotions, read once per process."""
    return load_promotions()


def _load_fee_file(path: Path) -> tuple[FeeSchedule, Promotions]:
    source = _display(path)
    document = _read_toml(path, source)
    try:
        _check_keys(document, "the file", required=frozenset({"fee"}), optional=frozenset({"promotion"}))
        return _parse_fees(document["fee"]), _parse_promotions(document.get("promotion", []))
    except _RuleBroken as broken:
        raise PricingDataError(source, broken.where, broken.rule) from None


def _display(path: Path) -> str:
    """The path as an operator would look for it: relative to the project when it is inside it."""
    resolved = path.resolve()
    if resolved.is_relative_to(_PROJECT_ROOT):
        return resolved.relative_to(_PROJECT_ROOT).as_posix()
    return str(path)


def _read_toml(path: Path, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PricingDataError(source, None, f"cannot be read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise PricingDataError(source, None, f"is not valid TOML: {exc}") from None


def _parse_rates(document: dict[str, Any], source: str) -> RateTable:
    _check_keys(document, "the file", required=_RATES_KEYS)
    if document["base"] != BASE_CURRENCY:
        raise _RuleBroken(
            "base", f"must be {BASE_CURRENCY!r} (fees and promotions are in it), not {document['base']!r}"
        )
    taken_at = _utc_datetime(document["taken_at"], "taken_at")
    seconds = document["quote_valid_seconds"]
    if type(seconds) is not int or seconds <= 0:
        raise _RuleBroken("quote_valid_seconds", f"must be a whole number of seconds above 0, not {seconds!r}")
    spread = _fraction(document["spread"], "spread", upper_inclusive=False)
    table = document["rates"]
    if not isinstance(table, dict) or not table:
        raise _RuleBroken("rates", 'must be a table of CURRENCY = "rate" rows, with at least one')
    rates = {BASE_CURRENCY: _ONE}
    for currency, value in table.items():
        rates[_rate_currency(currency)] = _positive_decimal(value, f"rates.{currency}")
    return RateTable(taken_at, timedelta(seconds=seconds), spread, MappingProxyType(rates), source)


def _rate_currency(currency: str) -> str:
    where = f"rates.{currency}"
    if currency == BASE_CURRENCY:
        raise _RuleBroken(where, f"is the base: 1 {BASE_CURRENCY} = 1 {BASE_CURRENCY} by definition; remove it")
    if currency not in _CURRENCY_SET:
        try:
            minor_unit_exponent(currency)  # raises with contracts.money's own explanation of the refusal
        except ValueError as exc:
            raise _RuleBroken(where, str(exc)) from None
    return currency


def _parse_fees(value: object) -> FeeSchedule:
    types = [member.value for member in FundingType]
    table = _check_keys(value, "fee", required=frozenset(types))
    rules: dict[FundingType, FeeRule] = {}
    for name in types:
        where = f"fee.{name}"
        row = _check_keys(table[name], where, required=_FEE_KEYS)
        rate = _fraction(row["rate"], f"{where}.rate", upper_inclusive=False)
        minimum = _usd(row["minimum"], f"{where}.minimum", allow_zero=True)
        rules[FundingType(name)] = FeeRule(FundingType(name), rate, minimum)
    return FeeSchedule(MappingProxyType(rules))


def _parse_promotions(value: object) -> Promotions:
    if not isinstance(value, list):
        raise _RuleBroken("promotion", "must be [[promotion]] tables")
    rows: list[Promotion] = []
    first_row: dict[str, int] = {}
    for number, raw in enumerate(value, start=1):
        promotion_id = raw.get("id") if isinstance(raw, dict) else None
        where = f"promotion row {number}" + ("" if promotion_id is None else f" (id {promotion_id!r})")
        row = _parse_promotion(raw, where)
        if row.id in first_row:
            raise _RuleBroken(where, f"id {row.id!r} is listed twice: rows {first_row[row.id]} and {number}")
        first_row[row.id] = number
        rows.append(row)
    return Promotions(tuple(rows))


def _parse_promotion(raw: object, where: str) -> Promotion:
    kinds = ", ".join(repr(kind.value) for kind in PromotionKind)
    kind = raw.get("kind") if isinstance(raw, dict) else None
    if kind not in [member.value for member in PromotionKind]:  # a list: kind may be unhashable
        raise _RuleBroken(where, f"kind must be one of {kinds}, not {kind!r}")
    extra = _DISCOUNT_KEYS if kind == PromotionKind.DISCOUNT else frozenset()
    if kind == PromotionKind.FEE_WAIVER and isinstance(raw, dict) and _DISCOUNT_KEYS & set(raw):
        key = min(_DISCOUNT_KEYS & set(raw))
        raise _RuleBroken(where, f"a fee waiver takes no {key!r}: it waives the whole fee between its dates")
    row = _check_keys(raw, where, required=_PROMOTION_KEYS | extra, optional=_PROMOTION_OPTIONAL)
    promotion_id = _promotion_id(row["id"], where)
    eligibility = _eligibility(row, where)
    if kind == PromotionKind.FEE_WAIVER:
        return FeeWaiver(promotion_id, eligibility)
    rate = _fraction(row["rate"], f"{where} rate", upper_inclusive=True)
    if rate == 0:
        raise _RuleBroken(where, "rate must be above 0: a discount of nothing is no promotion")
    cap = _usd(row["cap"], f"{where} cap", allow_zero=False)
    budget = _usd(row["budget"], f"{where} budget", allow_zero=False)
    if cap.amount_minor > budget.amount_minor:
        raise _RuleBroken(where, f"cap {cap} is above budget {budget}: no payment could get it")
    return Discount(promotion_id, eligibility, rate, cap, budget)


def _promotion_id(value: object, where: str) -> str:
    if not isinstance(value, str) or _PROMOTION_ID.fullmatch(value) is None or len(value) > _PROMOTION_ID_MAX:
        raise _RuleBroken(
            where, f"id must be lower-case letters, digits and hyphens, at most {_PROMOTION_ID_MAX}, not {value!r}"
        )
    return value


def _eligibility(row: dict[str, Any], where: str) -> Eligibility:
    starts_at = _utc_datetime(row["starts_at"], f"{where} starts_at")
    ends_at = _utc_datetime(row["ends_at"], f"{where} ends_at")
    if ends_at <= starts_at:
        raise _RuleBroken(where, f"ends_at {_utc_text(ends_at)} must be after starts_at {_utc_text(starts_at)}")
    funding_types = None
    if "funding_types" in row:
        allowed = [member.value for member in FundingType]
        funding_types = frozenset(
            FundingType(x) for x in _string_set(row["funding_types"], where, "funding_types", allowed)
        )
    buyer_regions = None
    if "buyer_regions" in row:
        buyer_regions = _string_set(row["buyer_regions"], where, "buyer_regions", None)
        for country in sorted(buyer_regions):
            if pycountry.countries.get(alpha_2=country) is None or not country.isupper() or len(country) != 2:
                raise _RuleBroken(where, f"buyer region {country!r} is not an upper-case ISO 3166-1 alpha-2 code")
    return Eligibility(starts_at, ends_at, funding_types, buyer_regions)


def _string_set(value: object, where: str, key: str, allowed: Iterable[str] | None) -> frozenset[str]:
    """A non-empty list of distinct strings (from ``allowed`` when given)."""
    if not isinstance(value, list) or not value or not all(isinstance(item, str) for item in value):
        raise _RuleBroken(where, f"{key} must be a non-empty list of strings (leave it out to mean all), not {value!r}")
    if len(set(value)) != len(value):
        raise _RuleBroken(where, f"{key} lists a value twice: {value!r}")
    if allowed is not None:
        choices = list(allowed)
        unknown = [item for item in value if item not in choices]
        if unknown:
            raise _RuleBroken(where, f"{key}: {unknown[0]!r} is not one of {', '.join(map(repr, choices))}")
    return frozenset(value)


def _check_keys(
    raw: object, where: str, *, required: frozenset[str], optional: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """``raw`` as a table with ``required`` keys and maybe ``optional`` ones: an unknown key is a typo."""
    if not isinstance(raw, dict):
        raise _RuleBroken(where, f"must be a table, not {raw!r}")
    unknown = sorted(set(raw) - required - optional)
    if unknown:
        expected = ", ".join(sorted(required | optional))
        raise _RuleBroken(where, f"unknown key {unknown[0]!r}; expected {expected}")
    missing = sorted(required - set(raw))
    if missing:
        raise _RuleBroken(where, f"missing key {missing[0]!r}")
    return raw


def _decimal(value: object, where: str) -> Decimal:
    """A plain decimal string: never a TOML float, which cannot hold 0.1 exactly."""
    if not isinstance(value, str):
        kinds = {float: "a float", int: "an integer", bool: "a boolean"}
        kind = kinds.get(type(value), type(value).__name__)
        raise _RuleBroken(where, f'must be a decimal string such as "0.015", not {kind} ({value!r})')
    if _DECIMAL_STRING.fullmatch(value) is None:
        raise _RuleBroken(where, f'{value!r} is not a plain decimal string such as "0.015"')
    return Decimal(value)


def _positive_decimal(value: object, where: str) -> Decimal:
    number = _decimal(value, where)
    if number <= 0:
        raise _RuleBroken(where, f"must be greater than zero, not {value!r}")
    return number


def _fraction(value: object, where: str, *, upper_inclusive: bool) -> Decimal:
    """A fraction ("0.015" = 1.5%): 0 <= x < 1, or <= 1 when ``upper_inclusive``."""
    number = _decimal(value, where)
    if number > 1 or (number == 1 and not upper_inclusive):
        bound = "at most 1" if upper_inclusive else "below 1"
        raise _RuleBroken(where, f'is a fraction ("0.015" = 1.5%) and must be {bound}, not {value!r}')
    return number


def _usd(value: object, where: str, *, allow_zero: bool) -> Money:
    """A decimal string in USD major units, at most two decimals (cents)."""
    number = _decimal(value, where)
    exponent = minor_unit_exponent(BASE_CURRENCY)
    decimals = len(str(value).partition(".")[2])
    if decimals > exponent:
        raise _RuleBroken(where, f"{value!r} has {decimals} decimals but {BASE_CURRENCY} has {exponent}")
    amount_minor = int(number.scaleb(exponent))
    if amount_minor == 0 and not allow_zero:
        raise _RuleBroken(where, f"must be greater than zero, not {value!r}")
    if amount_minor > max_amount_minor(BASE_CURRENCY):
        raise _RuleBroken(where, f"{value!r} is above the most an amount may be (100 billion major units)")
    return Money(amount_minor=amount_minor, currency=BASE_CURRENCY)


def _utc_datetime(value: object, where: str) -> datetime:
    """A TOML offset date-time in UTC (``2026-12-01T08:00:00Z``, unquoted)."""
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise _RuleBroken(
            where, f"must be a TOML date-time in UTC such as 2026-12-01T08:00:00Z (unquoted), not {value!r}"
        )
    if value.utcoffset() != timedelta(0):
        raise _RuleBroken(where, f"must be in UTC (ending in Z), not {value.isoformat()}")
    return value.astimezone(UTC)
