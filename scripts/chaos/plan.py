"""The fault schedule of one chaos run, drawn from its seed (G2, X6): pure, no I/O.

The same seed, length and services give the same schedule, so a failing run replays with the
command its report prints. What the schedule holds:

- **kills**: a service SIGKILLed every 5-10 s (drawn), restarted after a short pause;
- **one broker restart**, somewhere in the middle half of the fault window;
- **poison**: a malformed record sent to a topic every few seconds, of a drawn kind;
- **rates** the run applies to every record (duplicates and late copies, decided per record
  by :func:`copy_decision` from the seed and the record's bytes, so in any order of arrival)
  and to the funding network's first attempts (transient failures, lost answers: the
  simulator's own seeded :class:`services.funding.faults.FaultPlan`).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum


class FaultKind(StrEnum):
    KILL = "kill"
    """SIGKILL of a service process; it is started again after ``pause`` seconds."""
    BROKER_RESTART = "broker_restart"
    """The broker stopped and started again (its data kept)."""
    POISON = "poison"
    """A malformed record sent to ``target`` (a topic)."""


class PoisonKind(StrEnum):
    """The malformed records a chaos run sends; every consumer of the topic must dead-letter each
    at its first attempt, and none may block a partition. (Forgeries, records that decode but
    carry no or a bad signature, are tests/faults/test_forged_records.py's.)"""

    GARBAGE = "garbage"
    """Bytes that are not JSON."""
    UNKNOWN_TYPE = "unknown_type"
    """An envelope naming a message type no contract defines."""
    INVALID_PAYLOAD = "invalid_payload"
    """An envelope of a real type on its own topic, whose payload is not that type's."""
    WRONG_TOPIC = "wrong_topic"
    """A record whose ``tg-type`` header names a type that belongs on another topic."""


@dataclass(frozen=True, slots=True)
class Fault:
    at: float
    """Seconds after the fault window opens."""
    kind: FaultKind
    target: str
    """The service killed, the topic poisoned, or ``broker``."""
    pause: float = 0.0
    """How long a killed service stays down."""
    poison: PoisonKind | None = None


@dataclass(frozen=True, slots=True)
class Rates:
    """Shares of records and of funding-network first attempts the run disturbs."""

    duplicate: float = 0.2
    """Records published again at once (a producer's retry, a re-delivery)."""
    late_copy: float = 0.1
    """Records published again 0.5-5 s later, behind records of other keys (reordering)."""
    funding_transient: float = 0.05
    funding_lost_answer: float = 0.03

    def __post_init__(self) -> None:
        if not 0.0 <= round(self.duplicate + self.late_copy, 9) <= 0.3:
            raise ValueError(
                f"duplicates and late copies are at most 30% of records, not {self.duplicate + self.late_copy}"
            )


@dataclass(frozen=True, slots=True)
class Schedule:
    seed: int
    seconds: float
    faults: tuple[Fault, ...]
    rates: Rates

    def count(self, kind: FaultKind) -> int:
        return sum(1 for fault in self.faults if fault.kind is kind)


KILL_EVERY = (5.0, 10.0)
"""Seconds between two kills (drawn uniformly): the issue's 'every 5-10 s'."""
DOWN_FOR = (0.2, 2.0)
POISON_EVERY = (3.0, 8.0)


def schedule(
    seed: int,
    seconds: float,
    services: tuple[str, ...],
    topics: tuple[str, ...],
    *,
    rates: Rates | None = None,
    broker_restart: bool = True,
) -> Schedule:
    """The faults of a window of ``seconds``, in the order they happen."""
    if seconds <= 0:
        raise ValueError(f"the fault window must be positive, not {seconds}")
    draw = random.Random(f"{seed}:faults")  # noqa: S311 (a simulation, not a secret)
    faults = [
        *_every(draw, seconds, KILL_EVERY, lambda at: _kill(draw, at, services)),
        *_every(draw, seconds, POISON_EVERY, lambda at: _poison(draw, at, topics)),
    ]
    if broker_restart:
        faults.append(Fault(at=draw.uniform(0.25, 0.75) * seconds, kind=FaultKind.BROKER_RESTART, target="broker"))
    return Schedule(seed, seconds, tuple(sorted(faults, key=lambda f: f.at)), rates or Rates())


def _every(
    draw: random.Random, seconds: float, gap: tuple[float, float], make: Callable[[float], Fault]
) -> list[Fault]:
    faults, at = [], draw.uniform(*gap)
    while at < seconds:
        faults.append(make(at))
        at += draw.uniform(*gap)
    return faults


def _kill(draw: random.Random, at: float, services: tuple[str, ...]) -> Fault:
    return Fault(at=at, kind=FaultKind.KILL, target=draw.choice(services), pause=draw.uniform(*DOWN_FOR))


def _poison(draw: random.Random, at: float, topics: tuple[str, ...]) -> Fault:
    return Fault(at=at, kind=FaultKind.POISON, target=draw.choice(topics), poison=draw.choice(list(PoisonKind)))


class Copy(StrEnum):
    NONE = "none"
    DUPLICATE = "duplicate"
    LATE = "late"


def copy_decision(seed: int, rates: Rates, topic: str, value: bytes) -> tuple[Copy, float]:
    """Whether the run publishes this record again, and after how many seconds: the same for the
    same seed and record bytes, whatever order records arrive in."""
    digest = hashlib.sha256(f"{seed}:{topic}:".encode() + value).digest()
    draw = random.Random(digest)  # noqa: S311 (a simulation, not a secret)
    roll = draw.random()
    if roll < rates.duplicate:
        return Copy.DUPLICATE, 0.0
    if roll < rates.duplicate + rates.late_copy:
        return Copy.LATE, draw.uniform(0.5, 5.0)
    return Copy.NONE, 0.0
