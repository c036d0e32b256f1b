"""P3 at checkout: the quote a buyer is given, the price of an order for each funding type, and
what a payment books against the promotion budgets.

The buyer does not say in advance what kind of source pays: the account service knows whether
``source_id`` is a card or a bank account. So an order is priced once per funding type (the
fee differs by type) and the account takes the amount of the type it pays from; the payment
then keeps that type's breakdown. Before the type is known, the payment books against each
discount campaign the most any of the breakdowns would spend, so no overspend is possible;
once the account answers, the rest goes back (:func:`budget_left_over`).

A quote given to a buyer (``RequestQuote``) fixes the rate until ``expires_at``; a checkout that
names it pays at that rate, or fails with ``quote_expired``. A checkout without one is priced at
the rate of the moment it is captured.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from contracts import FundingType, Money
from services.payment.domain.pricing import (
    BASE_CURRENCY,
    Breakdown,
    Discount,
    FeeSchedule,
    Promotions,
    Quote,
    RateTable,
    default_fees,
    default_promotions,
    default_rates,
    load_fees,
    load_promotions,
    load_rates,
    price,
)
from shared.errors import CommandRefused

PRICED_TYPES = tuple(FundingType)


class QuoteRefused(CommandRefused):
    """A checkout names a quote that does not exist, is for something else, or has expired."""


@dataclass(slots=True)
class GivenQuote:
    """The price a buyer was shown for an order, per funding type, valid until ``expires_at``."""

    quote_id: str
    order_id: str
    buyer_id: str
    amount: Money
    buyer_currency: str
    rate: dict[str, Any] | None  # Quote.to_dict(); None for a domestic price
    expires_at: datetime
    breakdowns: dict[str, Any]  # funding type -> Breakdown.to_dict()

    @property
    def quote(self) -> Quote | None:
        return None if self.rate is None else Quote.from_dict(self.rate)

    def check_fits(self, order_id: str, buyer_id: str, amount: Money) -> None:
        """A checkout may use a quote only for the order, buyer and price it was given for."""
        if (order_id, buyer_id, amount) != (self.order_id, self.buyer_id, self.amount):
            raise QuoteRefused(
                "quote_mismatch",
                f"quote {self.quote_id} is for order {self.order_id}, buyer {self.buyer_id} and {self.amount}; "
                f"this payment is order {order_id}, buyer {buyer_id}, {amount}: ask for a quote for it",
            )

    def check_valid(self, now: datetime) -> None:
        if now >= self.expires_at:
            raise QuoteRefused(
                "quote_expired",
                f"quote {self.quote_id} held until {self.expires_at.isoformat()} (it is now {now.isoformat()}); "
                "ask for a new quote",
            )


def unknown_quote(quote_id: str) -> QuoteRefused:
    return QuoteRefused("quote_not_found", f"no quote {quote_id} was given; ask for a quote first")


@dataclass(frozen=True, slots=True)
class PricingRules:
    """The data files a price is made of, as loaded at start."""

    rates: RateTable
    fees: FeeSchedule
    promotions: Promotions

    @classmethod
    def load(cls, rates_file: Path, fees_file: Path) -> PricingRules:
        """Both files read and checked (PricingDataError names the broken key)."""
        return cls(load_rates(rates_file), load_fees(fees_file), load_promotions(fees_file))

    @classmethod
    def shipped(cls) -> PricingRules:
        """The rules of the data files in services/payment/data."""
        return cls(default_rates(), default_fees(), default_promotions())

    def fresh_quote(self, amount: Money, buyer_currency: str, now: datetime) -> Quote | None:
        """Today's rate for a price in ``buyer_currency``; None when nothing is converted."""
        if amount.currency == buyer_currency:
            return None
        return self.rates.quote(amount.currency, buyer_currency, now)

    def expiry(self, quote: Quote | None, now: datetime) -> datetime:
        return quote.expires_at if quote is not None else now + self.rates.quote_valid

    def discount_ids(self) -> tuple[str, ...]:
        return tuple(row.id for row in self.promotions.rows if isinstance(row, Discount))

    def price_each(
        self,
        amount: Money,
        buyer_currency: str,
        quote: Quote | None,
        now: datetime,
        *,
        budget_used: Mapping[str, Money],
        buyer_country: str | None,
    ) -> dict[FundingType, Breakdown]:
        """The breakdown of ``amount`` for each funding type, at ``quote`` (checked valid at ``now``)."""
        return {
            funding_type: price(
                amount,
                buyer_currency,
                funding_type,
                quote,
                self.fees,
                self.promotions,
                now,
                budget_used,
                buyer_country=buyer_country,
            )
            for funding_type in PRICED_TYPES
        }


def budget_to_book(breakdowns: Mapping[FundingType, Breakdown]) -> dict[str, int]:
    """Per discount campaign, the most any of the breakdowns would spend (USD minor units)."""
    booked: dict[str, int] = {}
    for breakdown in breakdowns.values():
        if breakdown.promotion_id is not None and breakdown.budget_charge is not None:
            spent = breakdown.budget_charge.amount_minor
            booked[breakdown.promotion_id] = max(booked.get(breakdown.promotion_id, 0), spent)
    return booked


def budget_left_over(booked: Mapping[str, int], chosen: Breakdown | None) -> dict[str, int]:
    """What goes back to each campaign once the payment's funding type is known: all it booked
    but what the chosen breakdown spends (everything when the payment failed: ``chosen`` None)."""
    left = dict(booked)
    if chosen is not None and chosen.promotion_id in left and chosen.budget_charge is not None:
        left[chosen.promotion_id] -= chosen.budget_charge.amount_minor
    return {promotion_id: amount for promotion_id, amount in left.items() if amount > 0}


def usd(amount_minor: int) -> Money:
    return Money(amount_minor=amount_minor, currency=BASE_CURRENCY)
