"""Features P1, P4, P5, P6: the funding network simulator's charges, refunds and status inquiries,
through the payment service's port (:class:`HttpFundingNetwork`), with its faults.

Each simulator is the real ``python -m services.funding`` on a free port, with its own database,
ready file and clock file. It answers a lost or timed-out request after 1.5 s; the adapter waits
0.5 s, so it gives up first and must find out with a status inquiry, never by a blind retry.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from contracts.money import Money
from services.funding.client import VaultClient
from services.payment.network import (
    Charged,
    Declined,
    HttpFundingNetwork,
    NetworkAnswer,
    NetworkRequestRefused,
    NotFound,
    Refunded,
    Unavailable,
    Unknown,
)
from shared.clock import advance_clock_file
from tests.support.funding import FundingSimulator

SLOW_ANSWER_SECONDS = 1.5
CALLER_TIMEOUT = 0.5

APPROVE = "4242424242424242"
INSUFFICIENT_FUNDS = "4000000000009995"
DO_NOT_HONOR = "4000000000000002"
STOLEN_CARD = "4000000000009979"
TIMEOUT_ONCE = "4000000000005019"
LOST_ANSWER = "4000000000005027"
ISSUER_UNAVAILABLE = "4000000000000119"


def usd(amount_minor: int) -> Money:
    return Money(amount_minor=amount_minor, currency="USD")


def request_id(label: str) -> str:
    return f"{label}:{secrets.token_hex(6)}"


class Simulator(FundingSimulator):
    """The simulator with a clock file of its own, slow answers after ``SLOW_ANSWER_SECONDS`` and
    extra ``FUNDING_*`` settings."""

    def __init__(self, folder: Path, **settings: str) -> None:
        self.clock_file = folder / "clock.json"
        defaults = {"clock_file": str(self.clock_file), "slow_answer_seconds": str(SLOW_ANSWER_SECONDS)}
        super().__init__(folder, **{**defaults, **settings})

    def network(self, timeout: float = CALLER_TIMEOUT) -> HttpFundingNetwork:
        return HttpFundingNetwork(self.url, timeout=timeout)


@pytest.fixture(scope="module")
async def simulator(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Simulator]:
    """One simulator without run-level faults: only the cards' scripted behaviours."""
    process = Simulator(tmp_path_factory.mktemp("funding-network"))
    await process.start()
    try:
        yield process
    finally:
        await process.stop()


@pytest.fixture
async def network(simulator: Simulator) -> AsyncIterator[HttpFundingNetwork]:
    async with simulator.network() as adapter:
        yield adapter


async def timed(call: Any) -> tuple[NetworkAnswer, float]:
    started = time.monotonic()
    answer: NetworkAnswer = await call
    return answer, time.monotonic() - started


# --- P1: charges ------------------------------------------------------------------------------


async def test_p1_an_approved_card_is_charged_once(simulator: Simulator, network: HttpFundingNetwork) -> None:
    token = await simulator.token(APPROVE)
    key = request_id("pay")
    answer = await network.charge(key, token, usd(12999))
    assert isinstance(answer, Charged)
    assert answer.charge_id.startswith("ch_")
    assert answer.amount == usd(12999)
    # The inquiry and a repeat both show that one charge; the repeat charges nothing more.
    assert await network.status(key) == answer
    assert await network.charge(key, token, usd(12999)) == answer
    assert await simulator.ledger(token) == {
        "USD": {
            "captured_minor": 12999,
            "captures": 1,
            "refunded_minor": 0,
            "refunds": 0,
            "declines": 0,
            "net_minor": 12999,
        }
    }


async def test_p1_a_bank_account_and_other_currencies_are_charged(
    simulator: Simulator, network: HttpFundingNetwork
) -> None:
    async with VaultClient(simulator.url) as vault:
        account = await vault.tokenize_bank_account("DE89 3704 0044 0532 0130 00")
    answer = await network.charge(request_id("pay"), account.token, Money(amount_minor=5000, currency="EUR"))
    assert isinstance(answer, Charged)
    yen = await network.charge(request_id("pay"), account.token, Money(amount_minor=700, currency="JPY"))
    assert isinstance(yen, Charged)
    ledger = await simulator.ledger(account.token)
    assert (ledger["EUR"]["captured_minor"], ledger["JPY"]["captured_minor"]) == (5000, 700)


async def test_p1_the_network_book_holds_tokens_never_numbers(
    simulator: Simulator, network: HttpFundingNetwork
) -> None:
    token = await simulator.token(APPROVE)
    assert isinstance(await network.charge(request_id("pay"), token, usd(100)), Charged)
    stored, log = simulator.stored_bytes(), simulator.log_text()
    assert token.encode() in stored
    for number in (APPROVE, LOST_ANSWER, TIMEOUT_ONCE, INSUFFICIENT_FUNDS):
        assert number.encode() not in stored
        assert number not in log


# --- P4: declines, transient failures, unknown outcomes ---------------------------------------


@pytest.mark.parametrize(
    ("number", "reason"),
    [
        (INSUFFICIENT_FUNDS, "insufficient_funds"),
        ("5555555555555011", "insufficient_funds"),
        (DO_NOT_HONOR, "do_not_honor"),
        (STOLEN_CARD, "stolen_card"),
    ],
)
async def test_p4_a_declined_card_is_a_permanent_failure(
    simulator: Simulator, network: HttpFundingNetwork, number: str, reason: str
) -> None:
    token = await simulator.token(number)
    key = request_id("pay")
    assert await network.charge(key, token, usd(2500)) == Declined(reason, permanent=True)
    # Declined is an outcome the network keeps: the inquiry and a repeat tell the same.
    assert await network.status(key) == Declined(reason)
    assert await network.charge(key, token, usd(2500)) == Declined(reason)
    ledger = await simulator.ledger(token)
    assert (ledger["USD"]["captures"], ledger["USD"]["declines"]) == (0, 1)


async def test_p4_an_unknown_token_is_declined(network: HttpFundingNetwork) -> None:
    assert await network.charge(request_id("pay"), "tok_doesnotexist000000000000", usd(100)) == Declined(
        "unknown_token"
    )


async def test_p1_a_card_number_sent_as_a_token_is_refused_and_never_kept(
    simulator: Simulator, network: HttpFundingNetwork
) -> None:
    number = "4000056655665556"
    with pytest.raises(NetworkRequestRefused) as refused:
        await network.charge(request_id("pay"), number, usd(100))
    assert (refused.value.status, refused.value.field, refused.value.rule) == (422, "token", "format")
    assert number not in str(refused.value)
    assert number.encode() not in simulator.stored_bytes()
    assert number not in simulator.log_text()


async def test_p4_an_expired_card_is_declined_card_expired(simulator: Simulator, network: HttpFundingNetwork) -> None:
    today = datetime.now(UTC)
    token = await simulator.token(APPROVE, today.month, today.year)  # valid through the end of this month
    assert isinstance(await network.charge(request_id("pay"), token, usd(100)), Charged)
    advance_clock_file(simulator.clock_file, timedelta(days=40))  # the simulator's clock (X8), not a sleep
    assert await network.charge(request_id("pay"), token, usd(100)) == Declined("card_expired")


async def test_p4_an_unavailable_issuer_is_transient_and_applies_nothing(
    simulator: Simulator, network: HttpFundingNetwork
) -> None:
    token = await simulator.token(ISSUER_UNAVAILABLE)
    key = request_id("pay")
    assert await network.charge(key, token, usd(4200)) == Unavailable("issuer_unavailable")
    assert await network.charge(key, token, usd(4200)) == Unavailable("issuer_unavailable")
    assert await network.status(key) == NotFound()
    assert await simulator.ledger(token) == {}


async def test_p4_a_timed_out_charge_is_asked_about_then_retried_and_charged_once(
    simulator: Simulator, network: HttpFundingNetwork
) -> None:
    token = await simulator.token(TIMEOUT_ONCE)
    key = request_id("pay")
    answer, waited = await timed(network.charge(key, token, usd(3100)))
    assert answer == Unknown("network_timeout")
    assert waited < SLOW_ANSWER_SECONDS  # the adapter gave up; the simulator was still "thinking"
    # P4: ask before retrying. It was never applied, so the retry is safe.
    assert await network.status(key) == NotFound()
    retried = await network.charge(key, token, usd(3100))
    assert isinstance(retried, Charged)
    assert await network.status(key) == retried
    assert (await simulator.ledger(token))["USD"]["captures"] == 1


async def test_p4_a_lost_answer_is_found_by_the_inquiry_and_never_charged_twice(
    simulator: Simulator, network: HttpFundingNetwork
) -> None:
    token = await simulator.token(LOST_ANSWER)
    key = request_id("pay")
    assert await network.charge(key, token, usd(5500)) == Unknown("network_timeout")
    # The charge was applied though its answer never came: the inquiry says so.
    found = await network.status(key)
    assert isinstance(found, Charged)
    assert found.amount == usd(5500)
    # A retry with the same request id gets that same charge, not a second one.
    assert await network.charge(key, token, usd(5500)) == found
    assert (await simulator.ledger(token))["USD"] == {
        "captured_minor": 5500,
        "captures": 1,
        "refunded_minor": 0,
        "refunds": 0,
        "declines": 0,
        "net_minor": 5500,
    }
    # The fault fires once per card: the next payment on it is answered at once.
    assert isinstance(await network.charge(request_id("pay"), token, usd(100)), Charged)


async def test_p4_an_unreachable_network_is_unavailable_and_a_lost_inquiry_unknown() -> None:
    async with HttpFundingNetwork("http://127.0.0.1:9", timeout=CALLER_TIMEOUT) as nowhere:
        assert await nowhere.charge(request_id("pay"), "tok_x", usd(100)) == Unavailable("network_unreachable")
        assert await nowhere.status(request_id("pay")) == Unknown("connection_lost")


async def test_p5_the_same_request_id_with_another_body_is_refused(
    simulator: Simulator, network: HttpFundingNetwork
) -> None:
    token, other = await simulator.token(APPROVE), await simulator.token("5555555555554444")
    key = request_id("pay")
    first = await network.charge(key, token, usd(1000))
    assert isinstance(first, Charged)
    with pytest.raises(NetworkRequestRefused) as refused:
        await network.charge(key, token, usd(1001))
    assert (refused.value.status, refused.value.rule) == (409, "idempotency_conflict")
    assert "10.00 USD" in refused.value.message
    assert "10.01 USD" in refused.value.message
    with pytest.raises(NetworkRequestRefused) as other_card:
        await network.charge(key, other, usd(1000))
    assert other_card.value.rule == "idempotency_conflict"
    assert f"on {token}" in other_card.value.message
    assert f"on {other}" in other_card.value.message
    assert await network.status(key) == first
    assert (await simulator.ledger(token))["USD"]["captures"] == 1


# --- P6: refunds ------------------------------------------------------------------------------


async def charged(simulator: Simulator, network: HttpFundingNetwork, amount_minor: int) -> tuple[Charged, str]:
    token = await simulator.token(APPROVE)
    answer = await network.charge(request_id("pay"), token, usd(amount_minor))
    assert isinstance(answer, Charged)
    return answer, token


async def test_p6_a_partial_refund_leaves_the_rest(simulator: Simulator, network: HttpFundingNetwork) -> None:
    charge, _ = await charged(simulator, network, 10000)
    key = request_id("refund")
    refund = await network.refund(key, charge.charge_id, usd(3000))
    assert isinstance(refund, Refunded)
    assert refund.refund_id.startswith("re_")
    assert (refund.amount, refund.remaining) == (usd(3000), usd(7000))
    # Idempotent by its own request id: the repeat and the inquiry show the same refund.
    assert await network.refund(key, charge.charge_id, usd(3000)) == refund
    assert await network.refund_status(key) == refund
    assert await network.refund_status(request_id("refund")) == NotFound()
    with pytest.raises(NetworkRequestRefused) as refused:
        await network.refund(key, charge.charge_id, usd(3001))
    assert refused.value.rule == "idempotency_conflict"


async def test_p6_several_partials_refund_exactly_what_was_captured(
    simulator: Simulator, network: HttpFundingNetwork
) -> None:
    charge, token = await charged(simulator, network, 10000)
    remaining = []
    for amount in (2500, 2500, 4999, 1):
        refund = await network.refund(request_id("refund"), charge.charge_id, usd(amount))
        assert isinstance(refund, Refunded)
        remaining.append(refund.remaining.amount_minor)
    assert remaining == [7500, 5000, 1, 0]
    with pytest.raises(NetworkRequestRefused) as refused:
        await network.refund(request_id("refund"), charge.charge_id, usd(1))
    assert refused.value.remaining == usd(0)
    ledger = (await simulator.ledger(token))["USD"]
    assert (ledger["captured_minor"], ledger["refunded_minor"], ledger["refunds"], ledger["net_minor"]) == (
        10000,
        10000,
        4,
        0,
    )


async def test_p6_a_refund_beyond_what_remains_is_refused_naming_the_remainder(
    simulator: Simulator, network: HttpFundingNetwork
) -> None:
    charge, _ = await charged(simulator, network, 10000)
    assert isinstance(await network.refund(request_id("refund"), charge.charge_id, usd(4000)), Refunded)
    with pytest.raises(NetworkRequestRefused) as refused:
        await network.refund(request_id("refund"), charge.charge_id, usd(7000))
    assert (refused.value.status, refused.value.rule) == (422, "exceeds_remaining")
    assert refused.value.remaining == usd(6000)
    assert "60.00 USD" in refused.value.message
    with pytest.raises(NetworkRequestRefused) as unknown:
        await network.refund(request_id("refund"), "ch_nosuchcharge", usd(1))
    assert unknown.value.rule == "unknown_charge"
    with pytest.raises(NetworkRequestRefused) as currency:
        await network.refund(request_id("refund"), charge.charge_id, Money(amount_minor=1, currency="EUR"))
    assert currency.value.rule == "currency"


# --- P4 (and G2): a seeded run's faults replay ------------------------------------------------

RUN_SIZE = 30
# Thirty requests at once wait their turn at the simulator: a wider gap between the caller's
# timeout and a lost answer keeps a merely busy answer from passing for a lost one.
RUN_SLOW_ANSWER_SECONDS = 2.5
RUN_CALLER_TIMEOUT = 1.2


async def seeded_run(simulator: Simulator) -> tuple[list[str], list[str], dict[str, Any]]:
    """Charge and then refund RUN_SIZE fixed request ids; resolve every fault the P4 way.

    Returns the first answers' kinds (charges, refunds) and the ledger at the end."""
    token = await simulator.token(APPROVE)
    async with simulator.network(RUN_CALLER_TIMEOUT) as network:
        keys = [f"seeded-pay-{i}" for i in range(RUN_SIZE)]
        firsts = await asyncio.gather(*(network.charge(key, token, usd(1000)) for key in keys))
        charges: list[Charged] = []
        for key, first in zip(keys, firsts, strict=True):
            if isinstance(first, Unknown):
                resolved = await network.status(key)  # lost answer: applied, so never charged again
            elif isinstance(first, Unavailable):
                assert await network.status(key) == NotFound()
                resolved = await network.charge(key, token, usd(1000))  # faults hit first attempts only
            else:
                resolved = first
            assert isinstance(resolved, Charged), (key, first, resolved)
            charges.append(resolved)

        refund_keys = [f"seeded-refund-{i}" for i in range(RUN_SIZE)]
        refund_firsts = await asyncio.gather(
            *(network.refund(key, c.charge_id, usd(250)) for key, c in zip(refund_keys, charges, strict=True))
        )
        for key, charge, first in zip(refund_keys, charges, refund_firsts, strict=True):
            if isinstance(first, Unknown):
                resolved = await network.refund_status(key)
            elif isinstance(first, Unavailable):
                resolved = await network.refund(key, charge.charge_id, usd(250))
            else:
                resolved = first
            assert isinstance(resolved, Refunded), (key, first, resolved)
            assert resolved.remaining == usd(750)
    return [type(a).__name__ for a in firsts], [type(a).__name__ for a in refund_firsts], await simulator.ledger()


async def test_p4_a_seeded_run_makes_the_same_fault_decisions_in_another_process(tmp_path: Path) -> None:
    faults = {
        "transient_rate": "0.3",
        "lost_answer_rate": "0.2",
        "latency_ms": "20",
        "slow_answer_seconds": str(RUN_SLOW_ANSWER_SECONDS),
    }
    runs = [
        Simulator(tmp_path / "first", seed="424242", **faults),
        Simulator(tmp_path / "second", seed="424242", **faults),
        Simulator(tmp_path / "other-seed", seed="7", **faults),
    ]
    try:
        await asyncio.gather(*(run.start() for run in runs))
        (charges, refunds, ledger), (charges_again, refunds_again, ledger_again), (other, _, _) = await asyncio.gather(
            *(seeded_run(run) for run in runs)
        )
    finally:
        await asyncio.gather(*(run.stop() for run in runs))

    assert charges == charges_again
    assert refunds == refunds_again
    assert charges != other
    # Both faults showed up, on first attempts only, and every one was resolved without a double charge.
    assert {"Charged", "Unavailable", "Unknown"} <= set(charges)
    assert {"Refunded", "Unavailable", "Unknown"} <= set(refunds)
    expected = {
        "captured_minor": RUN_SIZE * 1000,
        "captures": RUN_SIZE,
        "refunded_minor": RUN_SIZE * 250,
        "refunds": RUN_SIZE,
        "declines": 0,
        "net_minor": RUN_SIZE * 750,
    }
    assert ledger == ledger_again == {"USD": expected}
