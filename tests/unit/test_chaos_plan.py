"""G2, X6: the chaos run's seeded fault schedule and its checks, without a stack."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import pytest

from contracts import ALL_TOPICS
from contracts.catalogue import consumers_of
from contracts.topics import DEAD_LETTER_CLASS, DEAD_LETTER_CONSUMER, DEAD_LETTER_SOURCE, MESSAGE_TYPE_HEADER
from scripts.chaos import checks
from scripts.chaos.faults import PoisonSent, poison_record
from scripts.chaos.plan import KILL_EVERY, Copy, FaultKind, PoisonKind, Rates, copy_decision, schedule
from scripts.cli.model import DeadLetter, DeadLetterId
from services.account.app import DEFINITION as ACCOUNT
from services.escrow.app import DEFINITION as ESCROW
from services.escrow.domain.ledger import TransferRecord
from services.notification.app import DEFINITION as NOTIFICATION
from services.payment.app import DEFINITION as PAYMENT
from services.saga.app import DEFINITION as SAGA
from shared.consumer import decode_record
from shared.signing import process_keyring
from tests.support.records import Record

SERVICES = ("account", "payment", "escrow", "notification", "saga")
TOPICS = ("tradeguard.order.commands", "tradeguard.payment.events")
DEFINITIONS = {d.name: d for d in (ACCOUNT, PAYMENT, ESCROW, NOTIFICATION, SAGA)}


def test_g2_the_same_seed_gives_the_same_schedule_and_another_seed_another() -> None:
    first = schedule(7, 120, SERVICES, TOPICS)

    assert schedule(7, 120, SERVICES, TOPICS) == first
    assert schedule(8, 120, SERVICES, TOPICS) != first


def test_x6_a_service_is_killed_every_5_to_10_seconds_and_the_broker_restarts_once_mid_window() -> None:
    plan = schedule(3, 600, SERVICES, TOPICS)
    kills = [f.at for f in plan.faults if f.kind is FaultKind.KILL]
    restarts = [f.at for f in plan.faults if f.kind is FaultKind.BROKER_RESTART]

    gaps = [b - a for a, b in zip([0.0, *kills], kills, strict=False)]
    assert all(KILL_EVERY[0] <= gap <= KILL_EVERY[1] for gap in gaps)
    assert 600 / KILL_EVERY[1] - 1 <= len(kills) <= 600 / KILL_EVERY[0]
    assert {f.target for f in plan.faults if f.kind is FaultKind.KILL} == set(SERVICES)
    assert len(restarts) == 1
    assert 150 <= restarts[0] <= 450
    assert [f.at for f in plan.faults] == sorted(f.at for f in plan.faults)
    assert schedule(3, 600, SERVICES, TOPICS, broker_restart=False).count(FaultKind.BROKER_RESTART) == 0


def test_x6_copies_are_decided_per_record_at_the_schedule_rates_whatever_the_order() -> None:
    rates = Rates(duplicate=0.2, late_copy=0.1)
    values = [f"record-{n}".encode() for n in range(4000)]
    decided = [copy_decision(5, rates, "t", v) for v in values]

    assert [copy_decision(5, rates, "t", v) for v in reversed(values)] == list(reversed(decided))
    shares = Counter(kind for kind, _ in decided)
    assert 0.17 < shares[Copy.DUPLICATE] / len(values) < 0.23
    assert 0.08 < shares[Copy.LATE] / len(values) < 0.12
    assert all(0.5 <= delay <= 5.0 for kind, delay in decided if kind is Copy.LATE)


def test_x6_more_than_30_percent_of_records_copied_is_refused() -> None:
    with pytest.raises(ValueError, match="at most 30%"):
        Rates(duplicate=0.25, late_copy=0.1)


@pytest.mark.parametrize("kind", list(PoisonKind))
def test_x6_every_poison_kind_is_poison_to_every_service_that_reads_the_topic(kind: PoisonKind) -> None:
    """So each is dead-lettered by every consumer group of its topic, at its first attempt."""
    for topic in ALL_TOPICS:
        readers = [name for name in consumers_of(topic) if name in DEFINITIONS]
        if not readers:
            continue
        value, message_type = poison_record(kind, topic.name, 3)
        headers = ((MESSAGE_TYPE_HEADER, message_type.encode()),) if message_type else ()
        record = Record(topic=topic.name, value=value, key=b"chaos-poison-3", headers=headers)
        for name in readers:
            delivery = decode_record(record, DEFINITIONS[name].handlers, process_keyring().verifier(name))
            assert delivery is not None, f"{name} skips {kind} on {topic.name}"
            assert delivery.poison, f"{name} would handle {kind} on {topic.name}"


def _letter(source: str, service: str, kind: str = "record") -> DeadLetter:
    headers = (
        (DEAD_LETTER_SOURCE, source.encode()),
        (DEAD_LETTER_CONSUMER, service.encode()),
        (DEAD_LETTER_CLASS, kind.encode()),
    )
    return DeadLetter(id=DeadLetterId(0, 0), timestamp_ms=0, key=None, value=None, headers=headers)


def test_x6_poison_must_be_dead_lettered_by_every_consumer_of_its_topic_within_three_attempts() -> None:
    sent = [PoisonSent(PoisonKind.GARBAGE, "tradeguard.payment.events", 0, 9)]
    consumers = ("notification", "saga")  # catalogue.consumers_of(payment events) among the running
    every = [_letter("tradeguard.payment.events/0/9", name) for name in consumers]

    assert checks.poison_violations(sent, every, SERVICES) == []
    assert "not dead-lettered by saga" in str(checks.poison_violations(sent, every[:1], SERVICES))
    assert checks.poison_violations(sent, [*every, every[0], every[0]], SERVICES) == []  # three lives
    four = checks.poison_violations(sent, [*every, every[0], every[0], every[0]], SERVICES)
    assert "notification 4 times" in str(four)
    retried = [_letter("tradeguard.payment.events/0/9", "notification", "bug"), every[1]]
    assert "not at once" in str(checks.poison_violations(sent, retried, SERVICES))


def _transfer(seq: int, transfer_id: str, code: str, kind: str = "pending", order_id: str = "o-1") -> TransferRecord:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    return TransferRecord(seq, transfer_id, kind, "a", "b", 100, "USD", order_id, code, None, None, at, None)


def test_g2_one_ledger_effect_per_order_and_step() -> None:
    """A partial refund voids the reserve and reserves the rest again: two pending holds, one
    effect per step (each step's transfers are named after it)."""
    once = [
        _transfer(0, "hold:o-1", "hold", kind="single_phase"),
        _transfer(1, "hold:o-1:reserve", "hold"),
        _transfer(2, "return:o-1:r1:void", "hold", kind="void_pending"),
        _transfer(3, "return:o-1:r1", "refund", kind="single_phase"),
        _transfer(4, "return:o-1:r1:reserve", "hold"),
        _transfer(5, "release:o-1", "hold", kind="post_pending"),
    ]
    assert checks.ledger_effect_violations(once) == []

    twice = [*once, _transfer(6, "return:o-1:r1", "refund", kind="single_phase")]
    found = checks.ledger_effect_violations(twice)
    assert [(v.invariant, v.order_id) for v in found] == [("ledger_once", "o-1")]
    assert "applied 2 times" in str(found[0])


def test_g2_an_order_that_ended_otherwise_or_late_is_a_violation() -> None:
    assert checks.outcome_violations([("order 1", "o-1", "completed", "completed")]) == []
    assert checks.outcome_violations([("order 1", "o-1", "completed", "cancelled")])[0].order_id == "o-1"
    assert checks.slow_violations({"o-1": 12.0}, 30) == []
    assert checks.slow_violations({"o-1": 31.5}, 30)[0].order_id == "o-1"
    assert checks.slow_violations({"o-1": 31.5}, 30, {"o-1": 20.0}) == []  # its branch waits on retry timers
    assert checks.lag_violations({("saga", "t", 0): 0}) == []
    assert "3 records" in str(checks.lag_violations({("saga", "t", 0): 3}))
