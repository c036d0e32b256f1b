"""P2 against real databases: the payment service's copy of a buyer's limits, spending counted
per day, given back when the payment fails, and two payments racing for the same headroom."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts import (
    AccountRegistered,
    CapturePayment,
    DeclineReason,
    Limits,
    Money,
    PaymentAuthorizationDeclined,
    decode_message,
)
from services.payment.app import DEFINITION as PAYMENT
from services.payment.network import HttpFundingNetwork
from services.payment.ports import PaymentPorts
from services.payment.store import spending_windows
from shared.clock import ManualClock
from shared.consumer import BatchConsumer
from shared.tables import outbox
from tests.support.records import record_of

BUYER = "buyer-p2"
NOW = datetime.now(UTC)
LONG_AGO = NOW - timedelta(days=60)  # an account this old has its full limits (new ones: half)


def usd(minor: int) -> Money:
    return Money(amount_minor=minor, currency="USD")


def consumer(engine: AsyncEngine) -> BatchConsumer:
    return BatchConsumer(
        name="payment",
        engine=engine,
        handlers=PAYMENT.handlers,
        rejections_topic=PAYMENT.rejections_topic,
        hand_over=lambda _stored: None,
        clock=ManualClock(NOW),
        dependencies=PaymentPorts(HttpFundingNetwork("http://127.0.0.1:9")),  # wallet payments never call it
    )


def registered() -> AccountRegistered:
    """A buyer's limits: 150 USD a payment, 200 USD a day."""
    return AccountRegistered(
        account_id=BUYER,
        phone_masked="+1*******123",
        full_name="Ana Li",
        country="US",
        currency="USD",
        language="en",
        limits=Limits(per_payment=usd(15_000), daily=usd(20_000), monthly=usd(50_000)),
        security_check_above=usd(20_000),
        enhanced_verification_required=False,
    )


def capture(order_id: str, minor: int) -> CapturePayment:
    return CapturePayment(order_id=order_id, buyer_id=BUYER, amount=usd(minor), marketplace_id="marketplace-1")


async def emitted(engine: AsyncEngine) -> list[Any]:
    async with engine.connect() as conn:
        values = (await conn.execute(sa.select(outbox.c.value).order_by(outbox.c.id))).scalars().all()
    return [decode_message(v).payload for v in values]


async def spent_today(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int(
            (
                await conn.execute(
                    sa.select(spending_windows.c.spent_minor).where(
                        spending_windows.c.kind == "day", spending_windows.c.account_id == BUYER
                    )
                )
            ).scalar_one()
        )


async def test_p2_payments_count_against_the_day_and_a_failed_one_gives_its_amount_back(
    payment_db: AsyncEngine,
) -> None:
    payments = consumer(payment_db)
    await payments.consume([record_of(registered(), occurred_at=LONG_AGO)])
    await payments.consume([record_of(capture("o-1", 9_000)), record_of(capture("o-2", 9_000))])
    await payments.consume([record_of(capture("o-3", 9_000))])  # 270 USD today: past the 200 USD day

    kinds = [
        (type(m).__name__, getattr(m, "order_id", None), getattr(m, "reason", None)) for m in await emitted(payment_db)
    ]
    assert kinds[:2] == [("AuthorizePayment", "o-1", None), ("AuthorizePayment", "o-2", None)]
    failed = kinds[2]
    assert failed == ("PaymentFailed", "o-3", "limit_exceeded")
    assert await spent_today(payment_db) == 18_000

    # The account declines o-2 (say, the balance is short): its 90 USD count no more.
    declined = PaymentAuthorizationDeclined(
        account_id=BUYER, order_id="o-2", amount=usd(9_000), reason=DeclineReason.INSUFFICIENT_FUNDS, detail="short"
    )
    await payments.consume([record_of(declined)])
    release = [m for m in await emitted(payment_db) if type(m).__name__ == "ReleaseSpending"]
    assert len(release) == 1
    await payments.consume([record_of(release[0])])  # the release comes back on the payment commands topic
    assert await spent_today(payment_db) == 9_000
    await payments.consume([record_of(capture("o-4", 9_000))])
    assert [type(m).__name__ for m in await emitted(payment_db)][-1] == "AuthorizePayment"


@pytest.mark.postgres
async def test_p2_two_payments_racing_for_the_same_headroom_cannot_both_pass(
    payment_db: AsyncEngine, second_instance: AsyncEngine
) -> None:
    first, second = consumer(payment_db), consumer(second_instance)
    await first.consume([record_of(registered(), occurred_at=LONG_AGO)])
    original_load = first._load
    runs = 0

    async def load_then_race(tx: Any, deliveries: Any) -> Any:
        nonlocal runs
        runs += 1
        uow = await original_load(tx, deliveries)
        if runs == 1:  # another instance pays 120 USD of the same day and commits first
            await second.consume([record_of(capture("o-b", 12_000))])
        return uow

    first._load = load_then_race  # type: ignore[method-assign]
    await first.consume([record_of(capture("o-a", 12_000))])  # 240 USD in all: past the 200 USD day

    assert runs == 2  # the first write met the second's version: re-run on fresh state
    outcomes = {getattr(m, "order_id", None): type(m).__name__ for m in await emitted(payment_db)}
    assert outcomes["o-b"] == "AuthorizePayment"
    assert outcomes["o-a"] == "PaymentFailed"
    assert await spent_today(payment_db) == 12_000
