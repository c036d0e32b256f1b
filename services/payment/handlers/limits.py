"""P2: the read copy of each buyer's limits (from the account service's events) and the
spending counted against them.

The payment service keeps its own copy of the limits the account service announces
(``AccountRegistered`` at L0, ``IdentityVerified`` at each new level) and counts every
payment against the buyer's calendar day and month (UTC) when the capture is asked. Two
payments racing for the same headroom cannot both pass: both change the same window rows,
and the second write fails its version check and is re-run on fresh state. A payment that
fails later gives its amount back through ``ReleaseSpending``.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, Decimal

from contracts import AccountRegistered, CapturePayment, IdentityVerified, Money, ReleaseSpending
from contracts.money import minor_unit_exponent
from services.payment.domain.limits import (
    AccountLimits,
    LimitExceeded,
    SpendingWindow,
    WindowKind,
    check_and_reserve,
    release,
    window_keys,
)
from services.payment.domain.payments import Payment
from services.payment.domain.pricing import default_rates
from services.payment.handlers import handlers
from services.payment.store import ACCOUNT_LIMITS, SPENDING
from shared.aggregates import Load
from shared.consumer import HandlerContext
from shared.logging import get_logger

log = get_logger(__name__)

LIMITS = ACCOUNT_LIMITS.by(lambda message, _: getattr(message, "buyer_id", None) or message.account_id)
DAY = SPENDING.by(lambda command, envelope: window_keys(command.buyer_id, envelope.occurred_at)[0])
MONTH = SPENDING.by(lambda command, envelope: window_keys(command.buyer_id, envelope.occurred_at)[1])
RELEASED_DAY = SPENDING.by(lambda command, _: (command.account_id, WindowKind.DAY, command.day))
RELEASED_MONTH = SPENDING.by(lambda command, _: (command.account_id, WindowKind.MONTH, command.month))


@handlers.on(AccountRegistered, loads=[LIMITS])
def account_registered(event: AccountRegistered, ctx: HandlerContext) -> None:
    if ctx.read(LIMITS, event) is None:
        ctx.add(
            ACCOUNT_LIMITS,
            AccountLimits.registered(event.account_id, event.limits, ctx.envelope.occurred_at, event.country),
        )


@handlers.on(IdentityVerified, loads=[LIMITS])
def identity_verified(event: IdentityVerified, ctx: HandlerContext) -> None:
    limits = ctx.read(LIMITS, event)
    if limits is None:
        log.warning("a level for an account whose registration this copy has not seen", account_id=event.account_id)
        return
    limits.apply_level(event.level, event.limits)


def count_against_limits(command: CapturePayment, payment: Payment, ctx: HandlerContext) -> str | None:
    """Count the payment against the buyer's limits; the refusal's words when one would be
    passed. No copy of the buyer's limits yet (an account the account service will decline
    anyway, or one registered a moment ago): nothing to count against."""
    limits = ctx.read(LIMITS, command)
    if limits is None:
        return None
    at = ctx.envelope.occurred_at
    amount = in_currency(command.amount, limits.currency)
    day = _window(ctx, DAY, command, WindowKind.DAY, limits.currency)
    month = _window(ctx, MONTH, command, WindowKind.MONTH, limits.currency)
    try:
        check_and_reserve(limits, day, month, amount, at)
    except LimitExceeded as exceeded:
        return exceeded.reason
    payment.limit_reserved, payment.limit_day, payment.limit_month = amount, day.start, month.start
    return None


def give_back(payment: Payment, ctx: HandlerContext) -> None:
    """A failed payment no longer counts against the buyer's limits."""
    if payment.limit_reserved is None or payment.limit_day is None or payment.limit_month is None:
        return
    ctx.emit(
        ReleaseSpending(
            order_id=payment.order_id,
            account_id=payment.buyer_id,
            amount=payment.limit_reserved,
            day=payment.limit_day,
            month=payment.limit_month,
        ),
        idempotency_key=payment.attempt_key("release"),  # each attempt gives back its own share
    )


@handlers.on(ReleaseSpending, loads=[RELEASED_DAY, RELEASED_MONTH])
def release_spending(command: ReleaseSpending, ctx: HandlerContext) -> None:
    day, month = ctx.read(RELEASED_DAY, command), ctx.read(RELEASED_MONTH, command)
    if day is None or month is None:
        log.warning("spending to give back in windows that do not exist", order_id=command.order_id)
        return
    release(day, month, command.amount)


def _window(
    ctx: HandlerContext, load: Load[SpendingWindow], command: CapturePayment, kind: WindowKind, currency: str
) -> SpendingWindow:
    window = ctx.read(load, command)
    if window is None:
        window = ctx.add(SPENDING, SpendingWindow.empty(command.buyer_id, kind, ctx.envelope.occurred_at, currency))
    return window


def in_currency(amount: Money, currency: str) -> Money:
    """The amount in the limits' currency at the rate table's mid rate, rounded up (a limit is
    never passed by rounding); the same amount when the currencies agree."""
    if amount.currency == currency:
        return amount
    mid = default_rates().quote(amount.currency, currency, default_rates().taken_at).mid_rate
    exponent = minor_unit_exponent(currency)
    converted = (amount.decimal * mid).quantize(Decimal(1).scaleb(-exponent), rounding=ROUND_CEILING)
    return Money(amount_minor=int(converted.scaleb(exponent)), currency=currency)
