"""P3 against real databases: a quote per funding type, a capture at the quoted rate (or refused
once the quote has run out), the breakdown published with the capture, and a discount
campaign's budget booked, settled, given back, and never overspent by racing payments."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts import (
    AccountRegistered,
    AuthorizePayment,
    CapturePayment,
    DeclineReason,
    FundingType,
    Limits,
    Money,
    PaymentAuthorizationDeclined,
    PaymentAuthorized,
    PaymentCaptured,
    PaymentFailed,
    PriceQuoted,
    RequestQuote,
    decode_message,
)
from services.payment.app import DEFINITION as PAYMENT
from services.payment.domain.pricing import DEFAULT_RATES_FILE
from services.payment.domain.quotes import PricingRules
from services.payment.network import HttpFundingNetwork
from services.payment.ports import PaymentPorts
from services.payment.store import campaign_budgets, payments
from shared.clock import ManualClock
from shared.consumer import BatchConsumer
from shared.tables import outbox
from tests.support.records import record_of

BUYER = "buyer-p3"
NOW = datetime.now(UTC)
LONG_AGO = NOW - timedelta(days=60)
CAMPAIGN = "test-half-off"


def fees_file(directory: Path, budget: str) -> Path:
    """The shipped fees with one campaign running now: half off, at most 10 USD a payment,
    ``budget`` USD in all."""
    path = directory / "fees.toml"
    path.write_text(
        f"""
[fee.wallet]
rate = "0.010"
minimum = "0.30"

[fee.card]
rate = "0.025"
minimum = "0.50"

[fee.bank_account]
rate = "0.008"
minimum = "1.00"

[[promotion]]
id = "{CAMPAIGN}"
kind = "discount"
rate = "0.50"
cap = "10.00"
budget = "{budget}"
starts_at = {(NOW - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")}
ends_at = {(NOW + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")}
"""
    )
    return path


def usd(minor: int) -> Money:
    return Money(amount_minor=minor, currency="USD")


def jpy(minor: int) -> Money:
    return Money(amount_minor=minor, currency="JPY")


def consumer(engine: AsyncEngine, pricing: PricingRules, clock: ManualClock | None = None) -> BatchConsumer:
    return BatchConsumer(
        name="payment",
        engine=engine,
        handlers=PAYMENT.handlers,
        rejections_topic=PAYMENT.rejections_topic,
        hand_over=lambda _stored: None,
        clock=clock or ManualClock(NOW),
        dependencies=PaymentPorts(HttpFundingNetwork("http://127.0.0.1:9"), pricing),  # wallet payments only
    )


def registered() -> AccountRegistered:
    """A buyer in Japan: wallet and limits in yen."""
    return AccountRegistered(
        account_id=BUYER,
        phone_masked="+81*******123",
        full_name="Aiko Sato",
        country="JP",
        currency="JPY",
        language="ja",
        limits=Limits(per_payment=jpy(1_500_000), daily=jpy(3_000_000), monthly=jpy(9_000_000)),
        security_check_above=jpy(3_000_000),
        enhanced_verification_required=False,
    )


def capture(order_id: str, minor: int, quote_id: str | None = None) -> CapturePayment:
    return CapturePayment(
        order_id=order_id, buyer_id=BUYER, amount=usd(minor), marketplace_id="marketplace-1", quote_id=quote_id
    )


async def emitted(engine: AsyncEngine) -> list[Any]:
    async with engine.connect() as conn:
        values = (await conn.execute(sa.select(outbox.c.value).order_by(outbox.c.id))).scalars().all()
    return [decode_message(v).payload for v in values]


async def last(engine: AsyncEngine, kind: type[Any], order_id: str) -> Any:
    found = [m for m in await emitted(engine) if isinstance(m, kind) and getattr(m, "order_id", None) == order_id]
    assert found, f"no {kind.__name__} for {order_id}"
    return found[-1]


async def budget_used(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        used = (
            await conn.execute(
                sa.select(campaign_budgets.c.used_minor).where(campaign_budgets.c.promotion_id == CAMPAIGN)
            )
        ).scalar_one_or_none()
    return int(used or 0)


@pytest.fixture
def pricing(tmp_path: Path) -> PricingRules:
    return PricingRules.load(DEFAULT_RATES_FILE, fees_file(tmp_path, budget="10.00"))


async def test_p3_a_quote_prices_each_funding_type_and_the_capture_pays_at_it(
    payment_db: AsyncEngine, pricing: PricingRules
) -> None:
    payments = consumer(payment_db, pricing)
    await payments.consume([record_of(registered(), occurred_at=LONG_AGO)])
    ask = RequestQuote(order_id="o-1", quote_id="q-1", buyer_id=BUYER, amount=usd(1_000))
    await payments.consume([record_of(ask)])
    quoted = await last(payment_db, PriceQuoted, "o-1")
    by_type = {b.funding_type: b for b in quoted.breakdowns}
    assert set(by_type) == set(FundingType)
    assert {b.total.currency for b in quoted.breakdowns} == {"JPY"}
    assert by_type[FundingType.CARD].fee.amount_minor > by_type[FundingType.WALLET].fee.amount_minor
    assert quoted.expires_at == NOW + timedelta(seconds=600)

    await payments.consume([record_of(capture("o-1", 1_000, quote_id="q-1"))])
    authorize = await last(payment_db, AuthorizePayment, "o-1")
    assert authorize.amount == by_type[FundingType.WALLET].total
    assert authorize.card_amount == by_type[FundingType.CARD].total
    assert authorize.bank_account_amount == by_type[FundingType.BANK_ACCOUNT].total

    paid = PaymentAuthorized(account_id=BUYER, order_id="o-1", amount=authorize.amount, funding_type=FundingType.WALLET)
    await payments.consume([record_of(paid)])
    captured = await last(payment_db, PaymentCaptured, "o-1")
    assert captured.amount == usd(1_000)
    assert captured.breakdown == by_type[FundingType.WALLET]
    assert captured.breakdown.settlement == usd(1_000)


async def test_p3_a_capture_after_its_quote_ran_out_fails_with_quote_expired(
    payment_db: AsyncEngine, pricing: PricingRules
) -> None:
    payments = consumer(payment_db, pricing)
    await payments.consume([record_of(registered(), occurred_at=LONG_AGO)])
    await payments.consume([record_of(RequestQuote(order_id="o-2", quote_id="q-2", buyer_id=BUYER, amount=usd(500)))])
    later = consumer(payment_db, pricing, ManualClock(NOW + timedelta(seconds=600)))  # the quote holds until then
    await later.consume([record_of(capture("o-2", 500, quote_id="q-2"))])
    failed = await last(payment_db, PaymentFailed, "o-2")
    assert (failed.reason, failed.permanent) == ("quote_expired", True)
    assert "ask for a new quote" in failed.detail
    await later.consume([record_of(capture("o-3", 500, quote_id="q-2"))])  # another order's quote
    assert (await last(payment_db, PaymentFailed, "o-3")).reason == "quote_mismatch"


async def test_p3_a_discount_books_its_budget_keeps_the_chosen_share_and_gives_back_a_failure(
    payment_db: AsyncEngine, pricing: PricingRules
) -> None:
    payments = consumer(payment_db, pricing)
    await payments.consume([record_of(registered(), occurred_at=LONG_AGO)])
    await payments.consume([record_of(capture("o-4", 600))])  # half off: 3 USD of the 10 USD budget, about
    booked = await budget_used(payment_db)
    assert 0 < booked <= 1_000
    authorize = await last(payment_db, AuthorizePayment, "o-4")
    paid = PaymentAuthorized(account_id=BUYER, order_id="o-4", amount=authorize.amount, funding_type=FundingType.WALLET)
    await payments.consume([record_of(paid)])
    captured = await last(payment_db, PaymentCaptured, "o-4")
    assert captured.breakdown.promotion_id == CAMPAIGN
    assert captured.breakdown.discount.amount_minor > 0
    kept = await budget_used(payment_db)
    assert 0 < kept <= booked

    await payments.consume([record_of(capture("o-5", 600))])
    declined = PaymentAuthorizationDeclined(
        account_id=BUYER,
        order_id="o-5",
        amount=(await last(payment_db, AuthorizePayment, "o-5")).amount,
        reason=DeclineReason.INSUFFICIENT_FUNDS,
        detail="short",
    )
    await payments.consume([record_of(declined)])
    assert await budget_used(payment_db) == kept  # the failed payment booked nothing in the end


@pytest.mark.postgres
async def test_p3_two_payments_racing_for_the_last_of_a_budget_never_overspend_it(
    payment_db: AsyncEngine, second_instance: AsyncEngine, pricing: PricingRules
) -> None:
    first, second = consumer(payment_db, pricing), consumer(second_instance, pricing)
    await first.consume([record_of(registered(), occurred_at=LONG_AGO)])
    original_load = first._load
    runs = 0

    async def load_then_race(tx: Any, deliveries: Any) -> Any:
        nonlocal runs
        runs += 1
        uow = await original_load(tx, deliveries)
        if runs == 1:  # another instance books 8 USD, about, of the 10 USD budget and commits first
            await second.consume([record_of(capture("o-b", 1_600))])
        return uow

    first._load = load_then_race  # type: ignore[method-assign]
    await first.consume([record_of(capture("o-a", 1_600))])  # would book 8 USD too: 16 in all

    assert runs == 2  # the first write met the second's version: re-run on fresh state
    async with payment_db.connect() as conn:
        rows = (await conn.execute(sa.select(payments.c.order_id, payments.c.pricing))).all()
    wallet_discount = {
        order_id: priced["breakdowns"]["wallet"]["discount"]["amount_minor"] for order_id, priced in rows
    }
    assert 0 < wallet_discount["o-a"] < wallet_discount["o-b"]  # o-a got what o-b left of the budget
    assert 990 <= await budget_used(payment_db) <= 1_000  # spent to the last cent or so, never past it
