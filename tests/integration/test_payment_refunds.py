"""Feature P6 against real databases (every test runs on SQLite and on PostgreSQL), the funding
network simulator (``python -m services.funding``) and, for card refunds, a real broker.

The payment service runs in-process (tests/support/payments.py): its real handlers on its own
database; for card and bank legs its network worker sends to the simulator and hands the
answers back over the broker, as in production. Each test pays an order first (the account
service's answers are sent as it would send them), then refunds it.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts import (
    AccountRegistered,
    AuthorizePayment,
    CapturePayment,
    CommandRejected,
    CreditWallet,
    FundingType,
    Limits,
    Money,
    PaymentAuthorized,
    PaymentCaptured,
    PaymentRefunded,
    RefundFailed,
    RefundLeg,
    RefundPayment,
    WalletCredited,
)
from services.account.app import DEFINITION as ACCOUNT
from services.payment.domain.network import MAX_ATTEMPTS
from services.payment.network import HttpFundingNetwork
from shared.clock import ManualClock
from shared.db import create_engine, migrate
from tests.support.accounts import AccountDriver
from tests.support.funding import FundingSimulator
from tests.support.payments import PaymentDriver, network_loop

BUYER = "buyer-p6"
APPROVE = "4242424242424242"
WALLET, CARD = FundingType.WALLET, FundingType.CARD


def usd(minor: int) -> Money:
    return Money(amount_minor=minor, currency="USD")


def new_order() -> str:
    return f"order-{uuid.uuid4().hex[:12]}"


def refund_of(order_id: str, minor: int, refund_id: str | None = None) -> RefundPayment:
    return RefundPayment(
        order_id=order_id, refund_id=refund_id or f"r-{uuid.uuid4().hex[:10]}", amount=usd(minor), reason="returned"
    )


async def ask_refund(payments: PaymentDriver, refund: RefundPayment, key: str | None = None) -> None:
    """As the saga sends it: keyed by its refund id unless the test says otherwise."""
    await payments.send(refund, key=key or f"refund:{refund.refund_id}")


def of_refund(refund_id: str) -> Any:
    return lambda message: message.refund_id == refund_id


def of_order(order_id: str) -> Any:
    return lambda message: message.order_id == order_id


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture
async def payments(payment_db: AsyncEngine, simulator: FundingSimulator) -> AsyncIterator[PaymentDriver]:
    async with HttpFundingNetwork(simulator.url, timeout=2.0) as network:
        yield PaymentDriver(payment_db, network)


@pytest.fixture
async def running(payments: PaymentDriver, kafka_bootstrap: str) -> AsyncIterator[PaymentDriver]:
    """The payment service with its network worker, answers coming back over the broker."""
    async with network_loop(payments, kafka_bootstrap):
        yield payments


@pytest.fixture
async def accounts(tmp_path: Path) -> AsyncIterator[AccountDriver]:
    """The account service in-process, on a database of its own, to apply the wallet credits."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'account.db'}")
    await migrate(engine, ACCOUNT.migrations)
    yield AccountDriver.create(engine, tmp_path / "account-state", ManualClock())
    await engine.dispose()


# --- paying the order first -------------------------------------------------------------------


def capture(order_id: str, minor: int, *, source_id: str | None = None, balance_first: bool = False) -> CapturePayment:
    return CapturePayment(
        order_id=order_id,
        buyer_id=BUYER,
        amount=usd(minor),
        marketplace_id="marketplace-1",
        source_id=source_id,
        use_balance_first=balance_first,
    )


async def authorisation_asked(payments: PaymentDriver, order_id: str) -> AuthorizePayment:
    [asked] = await payments.messages(AuthorizePayment, of_order(order_id))
    assert isinstance(asked, AuthorizePayment)
    return asked


async def pay_from_wallet(payments: PaymentDriver, order_id: str, minor: int) -> None:
    await payments.send(capture(order_id, minor))
    asked = await authorisation_asked(payments, order_id)
    # The account debits the wallet as it authorises.
    await payments.send(
        PaymentAuthorized(
            account_id=BUYER, order_id=order_id, amount=asked.amount, funding_type=WALLET, wallet_leg=asked.amount
        )
    )
    assert await payments.messages(PaymentCaptured, of_order(order_id))


async def pay_by_card(
    payments: PaymentDriver, simulator: FundingSimulator, order_id: str, minor: int, *, from_wallet: int = 0
) -> tuple[str, Money]:
    """Paid by card (the wallet's ``from_wallet`` first, P1 split); the card's token and what it was charged."""
    token = await simulator.token(APPROVE)
    await payments.send(capture(order_id, minor, source_id="card-1", balance_first=from_wallet > 0))
    asked = await authorisation_asked(payments, order_id)
    total = asked.card_amount or asked.amount  # what the buyer pays by card, in their currency (P3)
    wallet_leg = Money(amount_minor=from_wallet, currency=total.currency) if from_wallet else None
    source_leg = total - wallet_leg if wallet_leg is not None else total
    await payments.send(
        PaymentAuthorized(
            account_id=BUYER,
            order_id=order_id,
            amount=total,
            funding_type=CARD,
            source_token=token,
            wallet_leg=wallet_leg,
            source_leg=source_leg,
        )
    )
    assert await payments.wait_for(PaymentCaptured, of_order(order_id)), "the card was never charged"
    return token, source_leg


# --- wallet refunds ---------------------------------------------------------------------------


async def test_p6_a_wallet_refund_credits_the_wallet_through_credit_wallet(
    payments: PaymentDriver, accounts: AccountDriver
) -> None:
    order_id = new_order()
    await pay_from_wallet(payments, order_id, 10_000)
    refund = refund_of(order_id, 4000)
    await ask_refund(payments, refund)

    # The wallet part is a credit of the account service's, one per refund; the refund is done with it.
    [credit] = await payments.messages(CreditWallet, of_order(order_id))
    assert credit == CreditWallet(
        account_id=BUYER, order_id=order_id, amount=usd(4000), reference=f"refund:{refund.refund_id}"
    )
    [refunded] = await payments.messages(PaymentRefunded, of_refund(refund.refund_id))
    assert (refunded.amount, refunded.refunded, refunded.remaining) == (usd(4000), usd(4000), usd(6000))
    assert refunded.legs == [RefundLeg(funding_type=WALLET, amount=usd(4000))]

    # The account service applies it once, however often it is delivered.
    [credited] = await accounts.send(credit)
    assert isinstance(credited, WalletCredited)
    assert (credited.amount, credited.balance.amount_minor) == (usd(4000), 4000)
    [again] = await accounts.send(credit)
    assert isinstance(again, WalletCredited)
    assert again.balance.amount_minor == 4000


async def test_p6_a_refund_beyond_what_remains_is_refused_naming_the_remaining_amount(
    payments: PaymentDriver,
) -> None:
    order_id = new_order()
    await pay_from_wallet(payments, order_id, 10_000)
    await ask_refund(payments, refund_of(order_id, 7000))
    too_much = refund_of(order_id, 4000)
    await ask_refund(payments, too_much)

    [rejected] = await payments.messages(CommandRejected, lambda m: m.rejected_type == "RefundPayment")
    assert rejected.code == "refund_exceeds_remaining"
    assert rejected.reason == f"a refund of 40.00 USD exceeds what remains refundable of order {order_id}: 30.00 USD"
    assert not await payments.messages(PaymentRefunded, of_refund(too_much.refund_id))
    assert len(await payments.messages(CreditWallet, of_order(order_id))) == 1  # the refused one credits nothing


async def test_p6_a_refund_of_an_order_never_captured_is_refused(payments: PaymentDriver) -> None:
    order_id = new_order()
    await payments.send(capture(order_id, 5000))  # asked, not yet authorised
    await ask_refund(payments, refund_of(order_id, 1000))
    [rejected] = await payments.messages(CommandRejected)
    assert rejected.code == "payment_not_captured"


async def test_p6_a_repeated_refund_id_returns_the_first_result(payments: PaymentDriver) -> None:
    order_id = new_order()
    await pay_from_wallet(payments, order_id, 10_000)
    refund = refund_of(order_id, 4000)
    await ask_refund(payments, refund)
    first = [e for e in await payments.stored() if getattr(e.payload, "order_id", None) == order_id][-2:]
    assert [type(e.payload) for e in first] == [CreditWallet, PaymentRefunded]

    # The saga sends it again with the same key: the very same records again, nothing new done.
    await ask_refund(payments, refund)
    replayed = (await payments.stored())[-2:]
    assert [e.message_id for e in replayed] == [e.message_id for e in first]
    # The same key for another amount is refused.
    await ask_refund(payments, refund.model_copy(update={"amount": usd(4001)}))
    # The same refund id under another key: the first result again, or refused if it differs.
    await ask_refund(payments, refund, key="marketplace-retry-1")
    await ask_refund(payments, refund.model_copy(update={"amount": usd(5000)}), key="marketplace-retry-2")

    answers = await payments.messages(PaymentRefunded, of_refund(refund.refund_id))
    assert len(answers) == 3
    assert answers[2] == answers[0]
    rejected = await payments.messages(CommandRejected, lambda m: m.rejected_type == "RefundPayment")
    assert [r.code for r in rejected] == ["idempotency_conflict", "idempotency_conflict"]
    assert refund.refund_id in rejected[1].reason
    # Counted once: the other 60.00 may still be refunded, and not a cent more.
    rest = refund_of(order_id, 6000)
    await ask_refund(payments, rest)
    [last] = await payments.messages(PaymentRefunded, of_refund(rest.refund_id))
    assert last.remaining == usd(0)
    wallet_credits = await payments.messages(CreditWallet, of_order(order_id))
    assert sum(c.amount.amount_minor for c in {c.reference: c for c in wallet_credits}.values()) == 10_000


# --- card and split refunds (the network worker, over the broker) ------------------------------


@pytest.mark.kafka
async def test_p6_a_card_refund_reaches_the_funding_network_and_its_ledger(
    running: PaymentDriver, simulator: FundingSimulator
) -> None:
    order_id = new_order()
    token, charged = await pay_by_card(running, simulator, order_id, 10_000)
    refund = refund_of(order_id, 3000)
    await ask_refund(running, refund)

    [refunded] = await running.wait_for(PaymentRefunded, of_refund(refund.refund_id))
    assert (refunded.amount, refunded.refunded, refunded.remaining) == (usd(3000), usd(3000), usd(7000))
    assert refunded.legs == [RefundLeg(funding_type=CARD, amount=usd(3000))]
    assert not await running.messages(CreditWallet, of_order(order_id))
    assert (await simulator.ledger(token))["USD"] == {
        "captured_minor": charged.amount_minor,
        "captures": 1,
        "refunded_minor": 3000,
        "refunds": 1,
        "declines": 0,
        "net_minor": charged.amount_minor - 3000,
    }


@pytest.mark.kafka
async def test_p6_several_partials_of_a_split_end_exactly_at_what_was_captured(
    running: PaymentDriver, simulator: FundingSimulator
) -> None:
    order_id = new_order()
    token, card_leg = await pay_by_card(running, simulator, order_id, 10_000, from_wallet=4000)
    assert card_leg == usd(6000)

    events = []
    for minor in (2500, 2500, 4999, 1):  # one after the other, so each says what remained after it
        refund = refund_of(order_id, minor)
        await ask_refund(running, refund)
        [refunded] = await running.wait_for(PaymentRefunded, of_refund(refund.refund_id))
        events.append(refunded)

    # Card first (6000), then the wallet (4000): reverse order of the split.
    assert [[(leg.funding_type, leg.amount.amount_minor) for leg in e.legs] for e in events] == [
        [(CARD, 2500)],
        [(CARD, 2500)],
        [(CARD, 1000), (WALLET, 3999)],
        [(WALLET, 1)],
    ]
    assert [e.remaining.amount_minor for e in events] == [7500, 5000, 1, 0]
    assert sum(e.refunded.amount_minor for e in events) == 10_000
    ledger = (await simulator.ledger(token))["USD"]
    assert (ledger["captured_minor"], ledger["refunded_minor"], ledger["net_minor"]) == (6000, 6000, 0)
    wallet_credits = await running.messages(CreditWallet, of_order(order_id))
    assert sum(c.amount.amount_minor for c in wallet_credits) == 4000
    # Nothing is left to refund.
    await ask_refund(running, refund_of(order_id, 1))
    [rejected] = await running.messages(CommandRejected)
    assert rejected.reason.endswith(": 0.00 USD")


@pytest.mark.kafka
async def test_p6_a_cross_border_card_payment_is_refunded_at_the_original_rate(
    running: PaymentDriver, simulator: FundingSimulator
) -> None:
    yen = Money(amount_minor=10_000_000, currency="JPY")
    await running.send(
        AccountRegistered(
            account_id=BUYER,
            phone_masked="+81*******123",
            full_name="Aiko Sato",
            country="JP",
            currency="JPY",
            language="en",
            limits=Limits(per_payment=yen, daily=yen, monthly=yen),
            security_check_above=yen,
            enhanced_verification_required=False,
        )
    )
    order_id = new_order()
    token, charged = await pay_by_card(running, simulator, order_id, 10_000)  # USD 100.00, paid in yen
    assert charged.currency == "JPY"

    refunds = [refund_of(order_id, minor) for minor in (3333, 3333, 3334)]
    events = []
    for refund in refunds:
        await ask_refund(running, refund)
        [refunded] = await running.wait_for(PaymentRefunded, of_refund(refund.refund_id))
        events.append(refunded)

    # Each gives the same share of what was paid, rounded on the running total (half up).
    paid = charged.amount_minor
    running_totals = [(2 * paid * r + 10_000) // 20_000 for r in (3333, 6666, 10_000)]
    assert [e.refunded.amount_minor for e in events] == [
        b - a for a, b in zip([0, *running_totals], running_totals, strict=False)
    ]
    assert {e.refunded.currency for e in events} == {"JPY"}
    assert sum(e.refunded.amount_minor for e in events) == paid
    ledger = (await simulator.ledger(token))["JPY"]
    assert (ledger["refunded_minor"], ledger["refunds"], ledger["net_minor"]) == (paid, 3, 0)


@pytest.mark.kafka
async def test_p6_a_refund_the_network_never_takes_goes_to_an_operator_and_stays_counted(
    running: PaymentDriver, simulator: FundingSimulator
) -> None:
    order_id = new_order()
    await pay_by_card(running, simulator, order_id, 10_000, from_wallet=4000)
    async with HttpFundingNetwork("http://127.0.0.1:9", timeout=0.5) as nowhere:
        running.ports.network = nowhere  # the issuer is gone from now on: every attempt is unavailable
        refund = refund_of(order_id, 10_000)
        await ask_refund(running, refund)
        [failed] = await running.wait_for(RefundFailed, of_refund(refund.refund_id))

    assert (failed.amount, failed.reason) == (usd(10_000), "network_unreachable")
    assert f"after {MAX_ATTEMPTS} attempts" in failed.detail
    assert not await running.messages(PaymentRefunded, of_refund(refund.refund_id))
    # The wallet part went back at once; the card part is owed by an operator, so it stays counted.
    [credit] = await running.messages(CreditWallet, of_order(order_id))
    assert credit.amount == usd(4000)
    await ask_refund(running, refund_of(order_id, 1))
    [rejected] = await running.messages(CommandRejected)
    assert rejected.code == "refund_exceeds_remaining"


@pytest.mark.kafka
async def test_s3_p6_a_failed_refund_asked_again_with_a_later_attempt_gives_back_only_its_card_part_once(
    running: PaymentDriver, simulator: FundingSimulator
) -> None:
    order_id = new_order()
    token, _ = await pay_by_card(running, simulator, order_id, 10_000, from_wallet=4000)
    refund = refund_of(order_id, 10_000)
    issuer = running.ports.network
    async with HttpFundingNetwork("http://127.0.0.1:9", timeout=0.5) as nowhere:
        running.ports.network = nowhere
        await ask_refund(running, refund)
        [failed] = await running.wait_for(RefundFailed, of_refund(refund.refund_id))
    assert failed.attempt == 1
    running.ports.network = issuer  # the issuer is back

    retry = refund.model_copy(update={"attempt": 2})
    await ask_refund(running, retry, key=f"refund:{refund.refund_id}:2")
    [refunded] = await running.wait_for(PaymentRefunded, of_refund(refund.refund_id))
    assert refunded.legs == [
        RefundLeg(funding_type=CARD, amount=usd(6000)),
        RefundLeg(funding_type=WALLET, amount=usd(4000)),
    ]
    assert refunded.remaining == usd(0)
    [credit] = await running.messages(CreditWallet, of_order(order_id))  # the wallet part, once, at the first ask
    assert credit.amount == usd(4000)
    ledger = (await simulator.ledger(token))["USD"]
    assert (ledger["refunded_minor"], ledger["refunds"], ledger["net_minor"]) == (6000, 1, 0)
    # A repeat of the first ask, or of the retry, changes nothing: the outcome as it stands.
    await ask_refund(running, refund, key="marketplace-repeat")
    assert len(await running.wait_for(PaymentRefunded, of_refund(refund.refund_id), count=2)) == 2
    assert len(await running.messages(RefundFailed, of_refund(refund.refund_id))) == 1
    assert (await simulator.ledger(token))["USD"]["refunds"] == 1


@pytest.fixture(scope="module")
async def losing_simulator(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[FundingSimulator]:
    """A network that applies every first attempt but whose answer comes too late to be read."""
    process = FundingSimulator(
        tmp_path_factory.mktemp("p6-funding-lost"), lost_answer_rate="1", slow_answer_seconds="1.0"
    )
    await process.start()
    try:
        yield process
    finally:
        await process.stop()


@pytest.mark.kafka
async def test_p6_a_refund_whose_answer_is_lost_is_asked_about_and_applied_once(
    payment_db: AsyncEngine, losing_simulator: FundingSimulator, kafka_bootstrap: str
) -> None:
    async with HttpFundingNetwork(losing_simulator.url, timeout=0.3) as network:
        payments = PaymentDriver(payment_db, network)
        async with network_loop(payments, kafka_bootstrap):
            order_id = new_order()
            token, _ = await pay_by_card(payments, losing_simulator, order_id, 5000)
            refund = refund_of(order_id, 2000)
            await ask_refund(payments, refund)
            [refunded] = await payments.wait_for(PaymentRefunded, of_refund(refund.refund_id))
    assert refunded.legs == [RefundLeg(funding_type=CARD, amount=usd(2000))]
    ledger = (await losing_simulator.ledger(token))["USD"]
    assert (ledger["refunded_minor"], ledger["refunds"]) == (2000, 1)  # found by the inquiry, never sent twice
