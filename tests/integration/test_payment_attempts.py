"""S2 with P1, P4 and P5 against real databases (the payment service's on SQLite and on PostgreSQL),
the real account service, the funding network simulator and, for card legs, a real broker: an
order's payment tried again after a failure (``CapturePayment.attempt``).

The payment service and the account service run in-process on databases of their own
(tests/support/payments.py, tests/support/accounts.py); :class:`Shop` carries what one sends
the other across, in the order it was stored, as the broker would (the account commands, their
answers, and the payment service's ``ReleaseSpending`` to itself). For card legs the payment
service's network worker charges the simulator and hands the answers back over the broker.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts import (
    AccountRegistered,
    AddCard,
    AuthorizePayment,
    CapturePayment,
    CommandRejected,
    CreditWallet,
    DeclineReason,
    FundingType,
    FundWallet,
    Money,
    PaymentAuthorizationDeclined,
    PaymentAuthorized,
    PaymentCaptured,
    PaymentFailed,
    PaymentRefunded,
    RecordNetworkAnswer,
    RefundLeg,
    RefundPayment,
    ReleaseSpending,
    WalletCredited,
)
from contracts.payments import NetworkOutcome, NetworkRequestKind
from services.account.app import DEFINITION as ACCOUNT
from services.account.store import movements, wallets
from services.funding.client import VaultClient
from services.payment.domain.network import MAX_ATTEMPTS
from services.payment.network import Charged, HttpFundingNetwork
from services.payment.read_api import history
from services.payment.store import network_requests, spending_windows
from shared.clock import ManualClock
from shared.db import create_engine, migrate
from tests.support.accounts import AccountDriver
from tests.support.eventually import eventually
from tests.support.funding import NEXT_YEAR, FundingSimulator
from tests.support.payments import PaymentDriver, network_loop

BUYER = "buyer-s2"
APPROVE = "4242424242424242"
OTHER_APPROVE = "5555555555554444"
ISSUER_UNAVAILABLE = "4000000000000119"


def usd(minor: int) -> Money:
    return Money(amount_minor=minor, currency="USD")


def new_order() -> str:
    return f"order-{uuid.uuid4().hex[:12]}"


def of_order(order_id: str) -> Any:
    return lambda message: message.order_id == order_id


def of_attempt(order_id: str, attempt: int) -> Any:
    return lambda message: message.order_id == order_id and message.attempt == attempt


def capture(
    order_id: str, minor: int, attempt: int, *, source_id: str | None = None, balance_first: bool = False
) -> CapturePayment:
    """As the saga asks it: the same order and price on every attempt, the source may differ."""
    return CapturePayment(
        order_id=order_id,
        buyer_id=BUYER,
        amount=usd(minor),
        marketplace_id="marketplace-1",
        source_id=source_id,
        use_balance_first=balance_first,
        attempt=attempt,
    )


@dataclass
class Shop:
    """The payment and account services side by side; what each sends the other is carried by hand."""

    payments: PaymentDriver
    accounts: AccountDriver
    carried: set[uuid.UUID] = field(default_factory=set)
    account_answers: list[Any] = field(default_factory=list)

    async def carry(self) -> None:
        """Every AuthorizePayment, CreditWallet and ReleaseSpending the payment service stored and
        that was not carried yet, oldest first: the account's commands to it (its answers to a
        payment back), a ReleaseSpending back to the payment service, until nothing is left."""
        carried_types = (AuthorizePayment, CreditWallet, ReleaseSpending)
        while pending := [
            e
            for e in await self.payments.stored()
            if e.message_id not in self.carried and isinstance(e.payload, carried_types)
        ]:
            for envelope in pending:
                self.carried.add(envelope.message_id)
                if isinstance(envelope.payload, ReleaseSpending):
                    await self.payments.send(envelope.payload)
                    continue
                answers = await self.accounts.send(envelope.payload)
                self.account_answers += answers
                for answer in answers:
                    if isinstance(answer, PaymentAuthorized | PaymentAuthorizationDeclined):
                        await self.payments.send(answer)

    async def pay(self, command: CapturePayment) -> None:
        """The saga asks; the account answers what was asked."""
        await self.payments.send(command)
        await self.carry()

    async def add_card(self, simulator: FundingSimulator, source_id: str, number: str) -> str:
        """A card the buyer added through the vault; its token."""
        async with VaultClient(simulator.url) as vault:
            card = await vault.tokenize_card(number, 12, NEXT_YEAR, "123")
        await self.accounts.send(
            AddCard(
                account_id=BUYER,
                source_id=source_id,
                token=card.token,
                brand=card.brand,
                last4=card.last4,
                expiry_month=card.expiry_month,
                expiry_year=card.expiry_year,
            )
        )
        return card.token


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture
async def account_db(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'account.db'}")
    await migrate(engine, ACCOUNT.migrations)
    yield engine
    await engine.dispose()


@pytest.fixture
async def shop(payment_db: AsyncEngine, account_db: AsyncEngine, simulator: FundingSimulator, tmp_path: Path) -> Any:
    """A buyer registered, verified and bound to the marketplace (the payment service has its
    limits: a new L0 account in the US, 100.00 USD a day), with 20.00 USD in the wallet."""
    accounts = AccountDriver.create(account_db, tmp_path / "account-state", ManualClock())
    async with HttpFundingNetwork(simulator.url, timeout=2.0) as network:
        shop = Shop(PaymentDriver(payment_db, network), accounts)
        onboarded = await accounts.onboard(BUYER)
        [registered] = [m for m in onboarded if isinstance(m, AccountRegistered)]
        await shop.payments.send(registered)
        await accounts.send(FundWallet(account_id=BUYER, amount=usd(2_000)))
        yield shop


@pytest.fixture
async def running(shop: Shop, kafka_bootstrap: str) -> AsyncIterator[Shop]:
    """The shop with the payment service's network worker, its answers coming back over the broker."""
    async with network_loop(shop.payments, kafka_bootstrap):
        yield shop


# --- reading what the services stored ----------------------------------------------------------


async def spent_today(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        query = sa.select(spending_windows.c.spent_minor).where(
            spending_windows.c.kind == "day", spending_windows.c.account_id == BUYER
        )
        return int((await conn.execute(query)).scalar_one())


async def charges_asked(engine: AsyncEngine, order_id: str) -> dict[str, tuple[str, int]]:
    """The payment's network requests: request id -> (state, attempts sent)."""
    async with engine.connect() as conn:
        query = sa.select(network_requests).where(network_requests.c.order_id == order_id)
        return {row.request_id: (row.state, row.attempts) for row in (await conn.execute(query)).all()}


async def wallet_balance(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        query = sa.select(wallets.c.balance_minor).where(wallets.c.account_id == BUYER)
        return int((await conn.execute(query)).scalar_one())


async def wallet_movements(engine: AsyncEngine) -> list[tuple[str, str, int]]:
    """(kind, reference, amount) of every debit and credit of the buyer's wallet, oldest first."""
    async with engine.connect() as conn:
        query = (
            sa.select(movements.c.kind, movements.c.reference, movements.c.amount_minor)
            .where(movements.c.account_id == BUYER, movements.c.kind != "top_up")
            .order_by(movements.c.id)
        )
        return [(row.kind, row.reference, row.amount_minor) for row in (await conn.execute(query)).all()]


async def one_entry(engine: AsyncEngine) -> dict[str, Any]:
    status, body = await history(engine, {"account_id": BUYER})
    assert status == 200
    [entry] = body["payments"]
    assert isinstance(entry, dict)
    return entry


# --- tests ------------------------------------------------------------------------------------


@pytest.mark.kafka
async def test_s2_p4_a_wallet_attempt_declined_for_funds_then_a_card_attempt_is_captured_and_counted_once(
    running: Shop, simulator: FundingSimulator
) -> None:
    shop, order_id = running, new_order()
    token = await shop.add_card(simulator, "card-1", APPROVE)

    # Attempt 1 from the wallet: 60.00 USD, the wallet holds 20.00: the account declines.
    await shop.pay(capture(order_id, 6_000, attempt=1))
    [failed] = await shop.payments.messages(PaymentFailed, of_order(order_id))
    assert (failed.attempt, failed.reason, failed.permanent) == (1, DeclineReason.INSUFFICIENT_FUNDS.value, True)
    assert await spent_today(shop.payments.engine) == 0  # its share came back (ReleaseSpending)

    # Attempt 2 from a card: authorised, charged under an id of its own, captured.
    await shop.pay(capture(order_id, 6_000, attempt=2, source_id="card-1"))
    [asked] = await shop.payments.messages(AuthorizePayment, of_attempt(order_id, 2))
    assert asked.source_id == "card-1"
    [captured] = await shop.payments.wait_for(PaymentCaptured, of_order(order_id))
    assert (captured.attempt, captured.source_leg, captured.wallet_leg) == (2, usd(6_000), None)
    assert await charges_asked(shop.payments.engine, order_id) == {f"charge:{order_id}:2": ("done", 1)}

    # Counted once: 60.00 of the 100.00 day (attempt 2 would not have passed with attempt 1's share kept).
    assert await spent_today(shop.payments.engine) == 6_000
    # P7: the history shows the attempt that was captured.
    entry = await one_entry(shop.payments.engine)
    assert (entry["status"], entry["attempt"], entry["funding_type"]) == ("captured", 2, "card")
    assert (entry["failure_reason"], entry["legs"]["source"]) == (None, {"amount_minor": 6_000, "currency": "USD"})
    assert entry["charge_id"].startswith("ch_")
    ledger = (await simulator.ledger(token))["USD"]
    assert (ledger["captured_minor"], ledger["captures"]) == (6_000, 1)
    assert await wallet_balance(shop.accounts.engine) == 2_000  # the wallet paid nothing

    # P6: a refund gives back attempt 2's charge.
    refund = RefundPayment(order_id=order_id, refund_id=f"r-{order_id}", amount=usd(6_000), reason="returned")
    await shop.payments.send(refund, key=f"refund:{refund.refund_id}")
    [refunded] = await shop.payments.wait_for(PaymentRefunded, of_order(order_id))
    assert refunded.legs == [RefundLeg(funding_type=FundingType.CARD, amount=usd(6_000))]
    assert (await simulator.ledger(token))["USD"]["net_minor"] == 0


@pytest.mark.kafka
async def test_s2_p4_an_issuer_unavailable_after_the_workers_retries_then_a_new_attempt_is_captured(
    running: Shop, simulator: FundingSimulator
) -> None:
    shop, order_id = running, new_order()
    away = await shop.add_card(simulator, "card-1", ISSUER_UNAVAILABLE)
    token = await shop.add_card(simulator, "card-2", OTHER_APPROVE)

    await shop.pay(capture(order_id, 5_000, attempt=1, source_id="card-1"))
    [failed] = await shop.payments.wait_for(PaymentFailed, of_order(order_id))
    assert (failed.attempt, failed.reason, failed.permanent) == (1, "issuer_unavailable", False)
    assert f"after {MAX_ATTEMPTS} attempts" in failed.detail
    await shop.carry()
    assert await spent_today(shop.payments.engine) == 0

    await shop.pay(capture(order_id, 5_000, attempt=2, source_id="card-2"))
    [captured] = await shop.payments.wait_for(PaymentCaptured, of_order(order_id))
    assert captured.attempt == 2
    assert await charges_asked(shop.payments.engine, order_id) == {
        f"charge:{order_id}": ("done", MAX_ATTEMPTS),
        f"charge:{order_id}:2": ("done", 1),
    }
    assert (await simulator.ledger(away)) == {}  # nothing was ever applied on the card that was away
    assert (await simulator.ledger(token))["USD"]["captured_minor"] == 5_000
    assert await spent_today(shop.payments.engine) == 5_000
    # A late answer to attempt 1's charge decides nothing: attempt 2 is captured, once.
    late = RecordNetworkAnswer(
        order_id=order_id,
        request_id=f"charge:{order_id}",
        kind=NetworkRequestKind.CHARGE,
        outcome=NetworkOutcome.CHARGED,
        amount=usd(5_000),
        charge_id="ch_late",
    )
    await shop.payments.send(late)
    assert len(await shop.payments.messages(PaymentCaptured, of_order(order_id))) == 1
    entry = await one_entry(shop.payments.engine)
    assert (entry["status"], entry["attempt"]) == ("captured", 2)
    assert entry["charge_id"].startswith("ch_")
    assert entry["charge_id"] != "ch_late"


@pytest.mark.kafka
async def test_p4_a_charge_applied_after_the_payment_gave_up_on_it_is_given_back_once(
    running: Shop, simulator: FundingSimulator
) -> None:
    shop, order_id = running, new_order()
    token = await shop.add_card(simulator, "card-1", APPROVE)
    issuer = shop.payments.ports.network
    async with HttpFundingNetwork("http://127.0.0.1:9", timeout=0.5) as nowhere:
        shop.payments.ports.network = nowhere
        await shop.pay(capture(order_id, 5_000, attempt=1, source_id="card-1"))
        [failed] = await shop.payments.wait_for(PaymentFailed, of_order(order_id))
    shop.payments.ports.network = issuer
    assert failed.reason == "network_unreachable"

    # The same attempt's charge, sent again by a worker restarted before its answer was
    # recorded, reached the issuer after all; its answer comes back to a payment that gave up.
    charged = await issuer.charge(f"charge:{order_id}", token, usd(5_000))
    assert isinstance(charged, Charged)
    late = RecordNetworkAnswer(
        order_id=order_id,
        request_id=f"charge:{order_id}",
        kind=NetworkRequestKind.CHARGE,
        outcome=NetworkOutcome.CHARGED,
        amount=usd(5_000),
        charge_id=charged.charge_id,
    )
    await shop.payments.send(late)
    ledger = await eventually(lambda: simulator.ledger(token), lambda found: found["USD"]["refunds"] == 1)
    assert (ledger["USD"]["captured_minor"], ledger["USD"]["refunded_minor"], ledger["USD"]["net_minor"]) == (
        5_000,
        5_000,
        0,
    )
    await shop.payments.send(late)  # repeated: given back once
    requests = await eventually(
        lambda: charges_asked(shop.payments.engine, order_id),
        lambda found: found.get(f"reversal:charge:{order_id}", ("", 0))[0] == "done",
    )
    assert requests == {f"charge:{order_id}": ("done", MAX_ATTEMPTS), f"reversal:charge:{order_id}": ("done", 1)}
    assert not await shop.payments.messages(PaymentCaptured, of_order(order_id))  # the payment stays failed
    assert (await simulator.ledger(token))["USD"]["refunds"] == 1


async def test_s2_a_late_answer_to_attempt_1_is_ignored_once_attempt_2_started(shop: Shop) -> None:
    order_id = new_order()
    await shop.pay(capture(order_id, 3_000, attempt=1))  # 30.00 from a wallet of 20.00: declined
    [first_decline] = [a for a in shop.account_answers if isinstance(a, PaymentAuthorizationDeclined)]
    assert first_decline.attempt == 1
    await shop.accounts.send(FundWallet(account_id=BUYER, amount=usd(2_000)))  # the buyer tops up

    # Attempt 2 is asked; its answer has not come yet.
    await shop.payments.send(capture(order_id, 3_000, attempt=2))
    [asked] = await shop.payments.messages(AuthorizePayment, of_attempt(order_id, 2))
    # Answers to attempt 1 arrive late (redelivered, or made up): neither decides attempt 2.
    await shop.payments.send(first_decline)
    await shop.payments.send(
        PaymentAuthorized(
            account_id=BUYER, order_id=order_id, amount=usd(3_000), funding_type=FundingType.WALLET, attempt=1
        )
    )
    assert not await shop.payments.messages(PaymentCaptured, of_order(order_id))
    assert len(await shop.payments.messages(PaymentFailed, of_order(order_id))) == 1
    assert (await one_entry(shop.payments.engine))["status"] == "pending"

    # Attempt 2's own answer captures it; the wallet pays once, for attempt 2.
    await shop.carry()
    [captured] = await shop.payments.messages(PaymentCaptured, of_order(order_id))
    assert (captured.attempt, captured.wallet_leg) == (2, usd(3_000))
    assert asked.attempt == 2
    assert await wallet_movements(shop.accounts.engine) == [("debit", f"{order_id}:2", 3_000)]
    assert await wallet_balance(shop.accounts.engine) == 1_000


@pytest.mark.kafka
async def test_s2_p1_a_split_whose_card_leg_failed_is_retried_and_the_wallet_pays_once_for_the_captured_attempt(
    running: Shop, simulator: FundingSimulator
) -> None:
    shop, order_id = running, new_order()
    token = await shop.add_card(simulator, "card-1", APPROVE)
    reachable = shop.payments.ports.network

    # Attempts 1 and 2: 50.00 USD, the wallet's 20.00 first, the card 30.00; the network is away.
    async with HttpFundingNetwork("http://127.0.0.1:9", timeout=0.5) as nowhere:
        shop.payments.ports.network = nowhere
        for attempt in (1, 2):
            await shop.pay(capture(order_id, 5_000, attempt, source_id="card-1", balance_first=True))
            [failed] = await shop.payments.wait_for(PaymentFailed, of_attempt(order_id, attempt))
            assert (failed.reason, failed.permanent) == ("network_unreachable", False)
            await shop.carry()  # the wallet leg goes back to the buyer
            assert await wallet_balance(shop.accounts.engine) == 2_000
        shop.payments.ports.network = reachable

    # Attempt 3, the same source: the wallet pays its 20.00 again, once, and the card the rest.
    await shop.pay(capture(order_id, 5_000, 3, source_id="card-1", balance_first=True))
    [captured] = await shop.payments.wait_for(PaymentCaptured, of_order(order_id))
    assert (captured.attempt, captured.wallet_leg, captured.source_leg) == (3, usd(2_000), usd(3_000))
    await shop.carry()
    assert await wallet_balance(shop.accounts.engine) == 0
    assert await wallet_movements(shop.accounts.engine) == [
        ("debit", order_id, 2_000),
        ("credit", order_id, 2_000),
        ("debit", f"{order_id}:2", 2_000),
        ("credit", f"{order_id}:2", 2_000),
        ("debit", f"{order_id}:3", 2_000),
    ]
    returned = await shop.payments.messages(CreditWallet, of_order(order_id))
    assert [(c.reference, c.amount) for c in returned] == [(None, usd(2_000)), (f"{order_id}:2", usd(2_000))]
    credited = [a for a in shop.account_answers if isinstance(a, WalletCredited)]
    assert [c.balance.amount_minor for c in credited] == [2_000, 2_000]
    assert (await simulator.ledger(token))["USD"]["captured_minor"] == 3_000
    # The account asked again for attempt 3 (a new message id) answers the first time's debit.
    [asked] = await shop.payments.messages(AuthorizePayment, of_attempt(order_id, 3))
    [again] = [a for a in await shop.accounts.send(asked) if isinstance(a, PaymentAuthorized)]
    assert (again.attempt, again.wallet_leg, again.balance) == (3, usd(2_000), usd(0))
    assert await wallet_balance(shop.accounts.engine) == 0


@pytest.mark.kafka
async def test_s2_p5_a_repeated_capture_of_an_attempt_repeats_its_outcome_and_charges_nothing_more(
    running: Shop, simulator: FundingSimulator
) -> None:
    shop, order_id = running, new_order()
    token = await shop.add_card(simulator, "card-1", APPROVE)
    await shop.pay(capture(order_id, 4_000, 1, source_id="card-1"))
    [first] = await shop.payments.wait_for(PaymentCaptured, of_order(order_id))

    # The same attempt again, then a later one: the capture again (with the attempt that was paid).
    await shop.pay(capture(order_id, 4_000, 1, source_id="card-1"))
    await shop.pay(capture(order_id, 4_000, 2, source_id="card-1"))
    answers = await shop.payments.messages(PaymentCaptured, of_order(order_id))
    assert answers == [first, first, first]
    assert first.attempt == 1
    assert len(await shop.payments.messages(AuthorizePayment, of_order(order_id))) == 1
    assert await charges_asked(shop.payments.engine, order_id) == {f"charge:{order_id}": ("done", 1)}
    ledger = (await simulator.ledger(token))["USD"]
    assert (ledger["captured_minor"], ledger["captures"]) == (4_000, 1)
    assert await spent_today(shop.payments.engine) == 4_000
    # The same order for another price is a conflict, whatever the attempt.
    await shop.payments.send(capture(order_id, 4_001, 3, source_id="card-1"))
    [rejected] = await shop.payments.messages(CommandRejected)
    assert rejected.code == "idempotency_conflict"


async def test_s2_a_repeated_failed_attempt_repeats_its_failure_and_asks_nothing_again(shop: Shop) -> None:
    order_id = new_order()
    await shop.pay(capture(order_id, 3_000, 1))
    await shop.pay(capture(order_id, 3_000, 1))
    failures = await shop.payments.messages(PaymentFailed, of_order(order_id))
    assert len(failures) == 2
    assert failures[1] == failures[0]
    assert len(await shop.payments.messages(AuthorizePayment, of_order(order_id))) == 1
    assert await spent_today(shop.payments.engine) == 0


async def test_s2_a_stale_attempt_is_ignored_and_a_later_one_while_pending_is_refused(shop: Shop) -> None:
    order_id = new_order()
    await shop.pay(capture(order_id, 3_000, 1))  # declined: the wallet holds 20.00
    await shop.accounts.send(FundWallet(account_id=BUYER, amount=usd(2_000)))
    await shop.payments.send(capture(order_id, 3_000, 2))  # asked; no answer yet
    before = len(await shop.payments.stored())

    # Attempt 1 again, late: stale, nothing at all (not even its failure again).
    await shop.payments.send(capture(order_id, 3_000, 1))
    assert len(await shop.payments.stored()) == before
    # Attempt 3 while attempt 2 is pending: refused, and nothing of it kept.
    await shop.payments.send(capture(order_id, 3_000, 3))
    [rejected] = await shop.payments.messages(CommandRejected)
    assert rejected.code == "payment_in_progress"
    assert "attempt 2 is still in progress" in rejected.reason
    assert len(await shop.payments.stored()) == before + 1
    assert (await one_entry(shop.payments.engine))["attempt"] == 2
    assert await spent_today(shop.payments.engine) == 3_000  # attempt 2's share, once

    await shop.carry()
    [captured] = await shop.payments.messages(PaymentCaptured, of_order(order_id))
    assert captured.attempt == 2
    # Once paid, a stale attempt is still nothing.
    await shop.payments.send(capture(order_id, 3_000, 1))
    assert len(await shop.payments.messages(PaymentCaptured, of_order(order_id))) == 1
