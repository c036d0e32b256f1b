"""Features P4 and G2: the funding network's fault plan and card behaviours, and how the payment
service's adapter reads the network's answers (no process, no sockets)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from contracts.funding_sources import CardBrand
from contracts.money import Money
from services.funding.cards import Behaviour
from services.funding.faults import (
    ChargeDecision,
    FaultPlan,
    NetworkDecline,
    Operation,
    Outcome,
    RunFault,
    decide_charge,
)
from services.funding.settings import FundingSettings
from services.funding.vault import StoredToken, TokenKind
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

ROOT = Path(__file__).resolve().parents[2]
TODAY = date(2026, 3, 15)
IDS = [f"order-{i}" for i in range(1000)]


def usd(amount_minor: int) -> Money:
    return Money(amount_minor=amount_minor, currency="USD")


# --- the run's fault plan ---------------------------------------------------------------------


def decisions(plan: FaultPlan, operation: Operation = Operation.CHARGE) -> list[RunFault]:
    return [plan.first_attempt(operation, request_id) for request_id in IDS]


class TestFaultPlan:
    """G2: a run's faults come from its seed; the same seed replays the same decisions."""

    def test_the_same_seed_makes_the_same_decisions(self) -> None:
        plan = FaultPlan(seed=42, transient_rate=0.2, lost_answer_rate=0.1)
        again = FaultPlan(seed=42, transient_rate=0.2, lost_answer_rate=0.1)
        assert decisions(plan) == decisions(again)
        # Asking in another order changes nothing: each request id has its own draw.
        assert [plan.first_attempt(Operation.CHARGE, r) for r in reversed(IDS)] == decisions(plan)[::-1]

    def test_another_seed_makes_other_decisions(self) -> None:
        first, second = (FaultPlan(seed=s, transient_rate=0.2, lost_answer_rate=0.1) for s in (1, 2))
        assert decisions(first) != decisions(second)

    def test_charges_and_refunds_draw_apart(self) -> None:
        plan = FaultPlan(seed=3, transient_rate=0.5)
        assert decisions(plan, Operation.CHARGE) != decisions(plan, Operation.REFUND)

    @pytest.mark.parametrize(("transient", "lost"), [(0.2, 0.1), (0.05, 0.3), (0.5, 0.5)])
    def test_rates_are_respected_over_a_thousand_request_ids(self, transient: float, lost: float) -> None:
        counts = Counter(decisions(FaultPlan(seed=2026, transient_rate=transient, lost_answer_rate=lost)))
        assert abs(counts[RunFault.TRANSIENT] / len(IDS) - transient) < 0.05
        assert abs(counts[RunFault.LOST_ANSWER] / len(IDS) - lost) < 0.05
        assert sum(counts.values()) == len(IDS)

    def test_no_rates_no_faults_and_full_rates_always(self) -> None:
        assert set(decisions(FaultPlan(seed=9))) == {RunFault.NONE}
        assert set(decisions(FaultPlan(seed=9, transient_rate=1.0))) == {RunFault.TRANSIENT}
        assert set(decisions(FaultPlan(seed=9, lost_answer_rate=1.0))) == {RunFault.LOST_ANSWER}

    def test_the_draw_does_not_depend_on_the_process_hash_seed(self) -> None:
        # Another interpreter with another PYTHONHASHSEED decides the same (the simulator's restarts).
        script = (
            "import json; from services.funding.faults import FaultPlan, Operation;"
            "plan = FaultPlan(seed=42, transient_rate=0.2, lost_answer_rate=0.1);"
            "print(json.dumps([plan.first_attempt(Operation.CHARGE, f'order-{i}').value for i in range(200)]))"
        )
        env = {**os.environ, "PYTHONHASHSEED": "12345"}
        out = subprocess.run(
            [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, check=True
        ).stdout
        plan = FaultPlan(seed=42, transient_rate=0.2, lost_answer_rate=0.1)
        assert json.loads(out) == [d.value for d in decisions(plan)[:200]]

    @pytest.mark.parametrize(
        "rates",
        [
            {"transient_rate": -0.1},
            {"transient_rate": 1.5},
            {"lost_answer_rate": 2.0},
            {"transient_rate": 0.6, "lost_answer_rate": 0.6},
            {"latency_ms": -1},
        ],
    )
    def test_impossible_rates_are_refused(self, rates: dict[str, float]) -> None:
        with pytest.raises(ValueError, match="must"):
            FaultPlan(seed=0, **rates)  # type: ignore[arg-type]

    def test_settings_read_the_plan_from_the_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("FUNDING_SEED", "77")
        monkeypatch.setenv("FUNDING_TRANSIENT_RATE", "0.25")
        monkeypatch.setenv("FUNDING_LOST_ANSWER_RATE", "0.125")
        monkeypatch.setenv("FUNDING_LATENCY_MS", "30")
        monkeypatch.setenv("FUNDING_SLOW_ANSWER_SECONDS", "1.5")
        settings = FundingSettings()
        assert (settings.seed, settings.transient_rate, settings.lost_answer_rate) == (77, 0.25, 0.125)
        assert (settings.latency_ms, settings.slow_answer_seconds) == (30, 1.5)
        monkeypatch.setenv("FUNDING_LOST_ANSWER_RATE", "0.8")
        with pytest.raises(ValidationError, match="at most 1"):
            FundingSettings()


# --- the cards' behaviours --------------------------------------------------------------------


def card(behaviour: Behaviour, expiry: tuple[int, int] | None = (12, 2030)) -> StoredToken:
    return StoredToken(
        token="tok_test",
        kind=TokenKind.CARD if expiry is not None else TokenKind.BANK_ACCOUNT,
        brand=CardBrand.VISA if expiry is not None else None,
        last4="4242",
        expiry_month=expiry[0] if expiry is not None else None,
        expiry_year=expiry[1] if expiry is not None else None,
        country=None,
        fingerprint="f",
        behaviour=behaviour,
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


def decide(
    stored: StoredToken | None, *, spent: bool = False, run_fault: RunFault = RunFault.NONE, today: date = TODAY
) -> ChargeDecision:
    return decide_charge(stored, today, one_shot_spent=spent, run_fault=run_fault)


class TestCardBehaviours:
    """P4: each scripted card answers as its behaviour says; one-shot faults fire once per token."""

    def test_approve_captures(self) -> None:
        decision = decide(card(Behaviour.APPROVE))
        assert (decision.outcome, decision.answer_late, decision.spends_one_shot) == (Outcome.CAPTURE, False, False)
        assert decision.applies
        assert decide(card(Behaviour.APPROVE, expiry=None)).outcome is Outcome.CAPTURE  # a bank account

    @pytest.mark.parametrize(
        ("behaviour", "reason"),
        [
            (Behaviour.DECLINE_INSUFFICIENT_FUNDS, NetworkDecline.INSUFFICIENT_FUNDS),
            (Behaviour.DECLINE_DO_NOT_HONOR, NetworkDecline.DO_NOT_HONOR),
            (Behaviour.DECLINE_STOLEN_CARD, NetworkDecline.STOLEN_CARD),
        ],
    )
    def test_declines_carry_their_reason(self, behaviour: Behaviour, reason: NetworkDecline) -> None:
        decision = decide(card(behaviour))
        assert (decision.outcome, decision.decline_reason) == (Outcome.DECLINE, reason)
        assert decision.applies  # a decline is kept: the inquiry tells it

    def test_an_unknown_token_is_declined(self) -> None:
        decision = decide(None)
        assert (decision.outcome, decision.decline_reason) == (Outcome.DECLINE, NetworkDecline.UNKNOWN_TOKEN)

    def test_an_expired_card_is_declined_from_the_day_after_its_month(self) -> None:
        march = card(Behaviour.APPROVE, expiry=(3, 2026))
        assert decide(march, today=date(2026, 3, 31)).outcome is Outcome.CAPTURE
        expired = decide(march, today=date(2026, 4, 1))
        assert (expired.outcome, expired.decline_reason) == (Outcome.DECLINE, NetworkDecline.CARD_EXPIRED)
        assert "03/2026" in expired.message
        # Expiry comes before the scripted decline.
        stolen = card(Behaviour.DECLINE_STOLEN_CARD, expiry=(1, 2026))
        assert decide(stolen).decline_reason is NetworkDecline.CARD_EXPIRED

    def test_an_unavailable_issuer_applies_nothing_every_time(self) -> None:
        for spent in (False, True):
            decision = decide(card(Behaviour.ISSUER_UNAVAILABLE), spent=spent)
            assert (decision.outcome, decision.applies) == (Outcome.UNAVAILABLE, False)

    def test_s2_unavailable_first_request_fails_its_first_request_only(self) -> None:
        away = card(Behaviour.UNAVAILABLE_FIRST_REQUEST)
        first = decide_charge(away, TODAY, one_shot_spent=False, first_request=True)
        assert (first.outcome, first.applies) == (Outcome.UNAVAILABLE, False)
        later = decide_charge(away, TODAY, one_shot_spent=False, first_request=False)
        assert later.outcome is Outcome.CAPTURE

    def test_timeout_once_times_out_unapplied_then_captures(self) -> None:
        first = decide(card(Behaviour.TIMEOUT_ONCE))
        assert (first.outcome, first.applies, first.spends_one_shot) == (Outcome.TIME_OUT, False, True)
        later = decide(card(Behaviour.TIMEOUT_ONCE), spent=True)
        assert (later.outcome, later.answer_late, later.spends_one_shot) == (Outcome.CAPTURE, False, False)

    def test_lost_answer_applies_and_answers_late_once(self) -> None:
        first = decide(card(Behaviour.LOST_ANSWER))
        assert (first.outcome, first.answer_late, first.spends_one_shot) == (Outcome.CAPTURE, True, True)
        later = decide(card(Behaviour.LOST_ANSWER), spent=True)
        assert (later.outcome, later.answer_late) == (Outcome.CAPTURE, False)

    def test_the_run_faults(self) -> None:
        # A transient fault comes first of all: nothing applied, not even a decline or a one-shot.
        for stored in (None, card(Behaviour.DECLINE_STOLEN_CARD), card(Behaviour.TIMEOUT_ONCE)):
            transient = decide(stored, run_fault=RunFault.TRANSIENT)
            assert (transient.outcome, transient.spends_one_shot) == (Outcome.UNAVAILABLE, False)
        # A lost answer delays whatever is applied, a decline too.
        assert decide(card(Behaviour.APPROVE), run_fault=RunFault.LOST_ANSWER).answer_late
        lost_decline = decide(card(Behaviour.DECLINE_DO_NOT_HONOR), run_fault=RunFault.LOST_ANSWER)
        assert (lost_decline.outcome, lost_decline.answer_late) == (Outcome.DECLINE, True)
        assert decide(None, run_fault=RunFault.LOST_ANSWER).answer_late


# --- the adapter's reading of answers (P4) ----------------------------------------------------

Handler = Callable[[httpx.Request], httpx.Response]
CHARGE = {
    "request_id": "k",
    "charge_id": "ch_1",
    "status": "captured",
    "amount": {"amount_minor": 500, "currency": "USD"},
}
REFUND = {
    "request_id": "r",
    "refund_id": "re_1",
    "charge_id": "ch_1",
    "status": "refunded",
    "amount": {"amount_minor": 200, "currency": "USD"},
    "refunded_total": {"amount_minor": 200, "currency": "USD"},
    "remaining": {"amount_minor": 300, "currency": "USD"},
}


def answering(status: int, body: object = None, text: str | None = None) -> Handler:
    def handle(request: httpx.Request) -> httpx.Response:
        if text is not None:
            return httpx.Response(status, text=text, request=request)
        return httpx.Response(status, json=body, request=request)

    return handle


def raising(error: type[httpx.TransportError]) -> Handler:
    def handle(request: httpx.Request) -> httpx.Response:
        raise error("simulated", request=request)

    return handle


async def charge_with(handler: Handler) -> NetworkAnswer:
    async with HttpFundingNetwork("http://network.test", transport=httpx.MockTransport(handler)) as network:
        return await network.charge("k", "tok_1", usd(500))


async def status_with(handler: Handler) -> NetworkAnswer:
    async with HttpFundingNetwork("http://network.test", transport=httpx.MockTransport(handler)) as network:
        return await network.status("k")


async def refund_with(handler: Handler) -> NetworkAnswer:
    async with HttpFundingNetwork("http://network.test", transport=httpx.MockTransport(handler)) as network:
        return await network.refund("r", "ch_1", usd(200))


@pytest.mark.parametrize(
    ("handler", "answer"),
    [
        (answering(201, CHARGE), Charged("ch_1", usd(500))),
        (
            answering(402, {"status": "declined", "decline_reason": "stolen_card"}),
            Declined("stolen_card", permanent=True),
        ),
        (answering(503, {"error": {"rule": "issuer_unavailable", "message": "m"}}), Unavailable("issuer_unavailable")),
        (answering(503, text="Service Unavailable"), Unavailable("issuer_unavailable")),
        (answering(429, {}), Unavailable("rate_limited")),
        (raising(httpx.ConnectError), Unavailable("network_unreachable")),
        (raising(httpx.ConnectTimeout), Unavailable("network_unreachable")),
        (raising(httpx.ReadTimeout), Unknown("network_timeout")),
        (raising(httpx.WriteTimeout), Unknown("network_timeout")),
        (raising(httpx.RemoteProtocolError), Unknown("connection_lost")),
        (raising(httpx.ReadError), Unknown("connection_lost")),
        (answering(500, text="boom"), Unknown("unexpected answer 500")),
        (answering(504, text="gateway"), Unknown("unexpected answer 504")),
        (answering(201, text="not json"), Unknown("unreadable_answer")),
        (
            answering(201, {"status": "captured", "charge_id": "ch_1", "amount": {"amount_minor": 1.5}}),
            Unknown("unreadable_answer"),
        ),
    ],
)
async def test_p4_a_charge_answer_is_read_as_one_outcome(handler: Handler, answer: NetworkAnswer) -> None:
    assert await charge_with(handler) == answer


@pytest.mark.parametrize(
    ("handler", "answer"),
    [
        (answering(200, CHARGE), Charged("ch_1", usd(500))),
        (answering(200, {"status": "declined", "decline_reason": "card_expired"}), Declined("card_expired")),
        (answering(404, {"request_id": "k", "status": "not_found"}), NotFound()),
        # Not the network's 404 (a wrong URL): nothing is known yet.
        (answering(404, text="Not Found"), Unknown("unexpected answer 404")),
        # An inquiry without an answer never says "not applied".
        (raising(httpx.ConnectError), Unknown("connection_lost")),
        (raising(httpx.ReadTimeout), Unknown("network_timeout")),
        (answering(503, {"error": {"rule": "issuer_unavailable"}}), Unknown("unexpected answer 503")),
    ],
)
async def test_p4_a_status_answer_is_read_as_one_outcome(handler: Handler, answer: NetworkAnswer) -> None:
    assert await status_with(handler) == answer


async def test_p6_a_refund_answer_is_read() -> None:
    assert await refund_with(answering(201, REFUND)) == Refunded("re_1", usd(200), usd(300))
    assert await refund_with(raising(httpx.ReadTimeout)) == Unknown("network_timeout")
    assert await refund_with(answering(503, {"error": {"rule": "issuer_unavailable"}})) == Unavailable(
        "issuer_unavailable"
    )


async def test_p4_a_callers_mistake_raises_instead_of_looking_like_a_fault() -> None:
    conflict = {"error": {"field": "request_id", "rule": "idempotency_conflict", "message": "request_id 'k' was ..."}}
    with pytest.raises(NetworkRequestRefused) as refused:
        await charge_with(answering(409, conflict))
    assert (refused.value.status, refused.value.rule, refused.value.field) == (
        409,
        "idempotency_conflict",
        "request_id",
    )
    assert "was ..." in str(refused.value)

    exceeds = {
        "error": {
            "field": "amount",
            "rule": "exceeds_remaining",
            "message": "amount: a refund of 2.00 USD exceeds the 1.00 USD that remains of charge ch_1",
            "remaining": {"amount_minor": 100, "currency": "USD"},
        }
    }
    with pytest.raises(NetworkRequestRefused) as too_much:
        await refund_with(answering(422, exceeds))
    assert too_much.value.remaining == usd(100)
    assert "1.00 USD" in too_much.value.message
