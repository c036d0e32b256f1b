"""P3 handlers: quotes for the marketplace's cashier, and the price of each captured payment
with the promotion budget it books (the rules are services/payment/domain/quotes.py)."""

from __future__ import annotations

from contracts import CapturePayment, FundingType, Money, PriceBreakdown, PriceQuoted, QuotedRate, RequestQuote
from services.payment.domain.payments import Payment, PaymentStatus
from services.payment.domain.pricing import Breakdown, CampaignBudget, Discount, Quote
from services.payment.domain.quotes import GivenQuote, budget_left_over, budget_to_book, unknown_quote, usd
from services.payment.handlers import handlers
from services.payment.handlers.limits import LIMITS
from services.payment.ports import discount_ids, ports
from services.payment.store import CAMPAIGN_BUDGETS, GIVEN_QUOTES
from shared.consumer import HandlerContext
from shared.errors import CommandRefused

QUOTE = GIVEN_QUOTES.by("quote_id")  # a capture without quote_id reads none
BUDGETS = CAMPAIGN_BUDGETS.each(lambda _message, _envelope: discount_ids())


@handlers.on(RequestQuote, loads=[QUOTE, LIMITS, BUDGETS])
def request_quote(command: RequestQuote, ctx: HandlerContext) -> None:
    given = ctx.read(QUOTE, command)
    if given is None:
        limits = ctx.read(LIMITS, command)
        if limits is None:
            raise CommandRefused(
                "account_not_found", f"buyer {command.buyer_id} is not registered (or registered a moment ago)"
            )
        rules = ports(ctx).pricing
        quote = rules.fresh_quote(command.amount, limits.currency, ctx.now)
        breakdowns = rules.price_each(
            command.amount,
            limits.currency,
            quote,
            ctx.now,
            budget_used=_budgets_used(ctx),
            buyer_country=limits.country,
        )
        given = ctx.add(
            GIVEN_QUOTES,
            GivenQuote(
                quote_id=command.quote_id,
                order_id=command.order_id,
                buyer_id=command.buyer_id,
                amount=command.amount,
                buyer_currency=limits.currency,
                rate=None if quote is None else quote.to_dict(),
                expires_at=rules.expiry(quote, ctx.now),
                breakdowns={kind.value: breakdown.to_dict() for kind, breakdown in breakdowns.items()},
            ),
        )
    given.check_fits(command.order_id, command.buyer_id, command.amount)
    ctx.emit(
        PriceQuoted(
            order_id=given.order_id,
            quote_id=given.quote_id,
            buyer_id=given.buyer_id,
            amount=given.amount,
            expires_at=given.expires_at,
            breakdowns=[breakdown_message(Breakdown.from_dict(data)) for data in given.breakdowns.values()],
        )
    )


def price_capture(command: CapturePayment, ctx: HandlerContext) -> dict[FundingType, Breakdown]:
    """The payment's price per funding type, at the quote it names (checked) or today's rate;
    CommandRefused (quote_not_found, quote_mismatch, quote_expired, currency_not_quoted) when
    it cannot be priced."""
    limits = ctx.read(LIMITS, command)
    # No copy of the buyer yet: priced as domestic; the account service declines an unknown buyer.
    buyer_currency = limits.currency if limits is not None else command.amount.currency
    rules = ports(ctx).pricing
    quote: Quote | None
    if command.quote_id is not None:
        given = ctx.read(QUOTE, command)
        if given is None:
            raise unknown_quote(command.quote_id)
        given.check_fits(command.order_id, command.buyer_id, command.amount)
        given.check_valid(ctx.now)
        quote, buyer_currency = given.quote, given.buyer_currency
    else:
        quote = rules.fresh_quote(command.amount, buyer_currency, ctx.now)
    country = limits.country if limits is not None else None
    return rules.price_each(
        command.amount, buyer_currency, quote, ctx.now, budget_used=_budgets_used(ctx), buyer_country=country
    )


def book_budgets(payment: Payment, breakdowns: dict[FundingType, Breakdown], ctx: HandlerContext) -> None:
    """Book against each campaign the most this payment could spend of it (the versioned rows
    make two racing payments re-run one after the other, so a budget is never overspent)."""
    booked = budget_to_book(breakdowns)
    for promotion_id, amount in booked.items():
        promotion = ports(ctx).pricing.promotions.get(promotion_id)
        assert isinstance(promotion, Discount), "only a discount spends a budget"
        _budget(ctx, promotion_id).reserve(promotion, usd(amount))
    payment.budget_reserved = booked or None


def settle_budgets(payment: Payment, ctx: HandlerContext) -> None:
    """Give back what the payment booked and will not spend: all of it once it failed, the rest
    of it once the account chose the funding type."""
    if not payment.budget_reserved:
        return
    chosen = None if payment.status is PaymentStatus.FAILED else payment.breakdown
    for promotion_id, amount in budget_left_over(payment.budget_reserved, chosen).items():
        _budget(ctx, promotion_id).release(usd(amount))
    payment.budget_reserved = None if chosen is None else _spent(chosen)


def breakdown_message(breakdown: Breakdown) -> PriceBreakdown:
    rate = None if breakdown.rate is None else breakdown.rate.to_dict()
    return PriceBreakdown(
        funding_type=breakdown.funding_type,
        amount=breakdown.amount,
        converted=breakdown.converted,
        rate=None if rate is None or breakdown.rate is None else _rate_message(breakdown.rate, rate),
        fee=breakdown.fee,
        discount=breakdown.discount,
        total=breakdown.total,
        settlement=breakdown.settlement,
        promotion_id=breakdown.promotion_id,
    )


def _rate_message(quote: Quote, text: dict[str, str]) -> QuotedRate:
    return QuotedRate(
        from_currency=quote.from_currency,
        to_currency=quote.to_currency,
        mid_rate=text["mid_rate"],  # as the quote stores them: exact decimal strings
        applied_rate=text["applied_rate"],
        taken_at=quote.taken_at,
        expires_at=quote.expires_at,
    )


def _spent(chosen: Breakdown) -> dict[str, int] | None:
    if chosen.promotion_id is None or chosen.budget_charge is None:
        return None
    return {chosen.promotion_id: chosen.budget_charge.amount_minor}


def _budgets_used(ctx: HandlerContext) -> dict[str, Money]:
    used = {}
    for promotion_id in discount_ids():
        budget = ctx.get(CAMPAIGN_BUDGETS, promotion_id)
        if budget is not None:
            used[promotion_id] = budget.used
    return used


def _budget(ctx: HandlerContext, promotion_id: str) -> CampaignBudget:
    return ctx.get(CAMPAIGN_BUDGETS, promotion_id) or ctx.add(CAMPAIGN_BUDGETS, CampaignBudget(promotion_id, usd(0)))
