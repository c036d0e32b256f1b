"""What the simulated network does with a request (SPEC P4, "Funding networks"): pure rules, no I/O.

Two sources of faults, both reproducible:

- **per card**, from the token's stored :class:`~services.funding.cards.Behaviour`: declines,
  an issuer that is always away, and two one-shot faults that fire on the first request naming
  the token (``timeout_once``: not applied, answered too late; ``lost_answer``: applied,
  answered too late);
- **per run**, from the settings (:class:`FaultPlan`): every first attempt of a request id draws
  from ``random.Random(f"{seed}:{operation}:{request_id}")``, so the same seed makes the same
  decisions in any process, in any order of arrival (SPEC G2: a failing seed replays its run).

:func:`decide_charge` combines them for one charge; the HTTP layer stores what it applies and
sleeps where the decision says the answer is late.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from services.funding.cards import Behaviour, card_expired
from services.funding.vault import StoredToken


class NetworkDecline(StrEnum):
    """Why the network declined a charge; every one is permanent (SPEC P4)."""

    INSUFFICIENT_FUNDS = "insufficient_funds"
    DO_NOT_HONOR = "do_not_honor"
    STOLEN_CARD = "stolen_card"
    CARD_EXPIRED = "card_expired"
    UNKNOWN_TOKEN = "unknown_token"  # noqa: S105 (a reason, not a secret)


DECLINING_BEHAVIOURS: dict[Behaviour, NetworkDecline] = {
    Behaviour.DECLINE_INSUFFICIENT_FUNDS: NetworkDecline.INSUFFICIENT_FUNDS,
    Behaviour.DECLINE_DO_NOT_HONOR: NetworkDecline.DO_NOT_HONOR,
    Behaviour.DECLINE_STOLEN_CARD: NetworkDecline.STOLEN_CARD,
}
ONE_SHOT_BEHAVIOURS = frozenset({Behaviour.TIMEOUT_ONCE, Behaviour.LOST_ANSWER})
"""Behaviours that fire on the first request naming the token, and never again."""


class Operation(StrEnum):
    """The namespaces of request ids: a charge and a refund may share one without sharing its draw."""

    CHARGE = "charge"
    REFUND = "refund"


class RunFault(StrEnum):
    """What the run's fault plan does to the first attempt of a request id."""

    NONE = "none"
    TRANSIENT = "transient"
    """Answered 503 at once; nothing applied (a retry goes through)."""
    LOST_ANSWER = "lost_answer"
    """Applied, but answered only after ``slow_answer_seconds`` (the caller has given up)."""


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """The run-level faults (``FUNDING_SEED``, ``FUNDING_TRANSIENT_RATE``, ``FUNDING_LOST_ANSWER_RATE``,
    ``FUNDING_LATENCY_MS``)."""

    seed: int = 0
    transient_rate: float = 0.0
    lost_answer_rate: float = 0.0
    latency_ms: int = 0

    def __post_init__(self) -> None:
        for name, rate in (("transient_rate", self.transient_rate), ("lost_answer_rate", self.lost_answer_rate)):
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, not {rate}")
        if self.transient_rate + self.lost_answer_rate > 1.0:
            raise ValueError(
                f"transient_rate + lost_answer_rate must be at most 1, not {self.transient_rate + self.lost_answer_rate}"
            )
        if self.latency_ms < 0:
            raise ValueError(f"latency_ms must not be negative, not {self.latency_ms}")

    @property
    def latency_seconds(self) -> float:
        return self.latency_ms / 1000

    def first_attempt(self, operation: Operation, request_id: str) -> RunFault:
        """The fault the first attempt of ``request_id`` meets; later attempts meet none.

        A string seed is hashed with SHA-512 by :class:`random.Random` (not by ``hash()``), so
        the draw is the same in every process whatever its ``PYTHONHASHSEED``.
        """
        if self.transient_rate == 0.0 and self.lost_answer_rate == 0.0:
            return RunFault.NONE
        roll = random.Random(f"{self.seed}:{operation.value}:{request_id}").random()  # noqa: S311 (a simulation, not a secret)
        if roll < self.transient_rate:
            return RunFault.TRANSIENT
        if roll < self.transient_rate + self.lost_answer_rate:
            return RunFault.LOST_ANSWER
        return RunFault.NONE


class Outcome(StrEnum):
    CAPTURE = "capture"
    DECLINE = "decline"
    UNAVAILABLE = "unavailable"
    """503 at once, nothing applied."""
    TIME_OUT = "time_out"
    """Nothing applied, and the answer (a 503) comes only after ``slow_answer_seconds``."""


@dataclass(frozen=True, slots=True)
class ChargeDecision:
    """What to do with one charge request that is not a repeat of a stored one."""

    outcome: Outcome
    decline_reason: NetworkDecline | None = None
    answer_late: bool = False
    """Apply, then answer only after ``slow_answer_seconds`` (a lost answer)."""
    spends_one_shot: bool = False
    """The token's one-shot behaviour fires now: record it, so it never fires again."""
    message: str = ""

    @property
    def applies(self) -> bool:
        """Whether the charge is stored (captured or declined): a status inquiry will find it."""
        return self.outcome in {Outcome.CAPTURE, Outcome.DECLINE}


def decide_charge(  # noqa: PLR0911 (a list of precedences reads best as one return each)
    card: StoredToken | None,
    today: date,
    *,
    one_shot_spent: bool,
    run_fault: RunFault = RunFault.NONE,
    first_request: bool = True,
) -> ChargeDecision:
    """The network's answer to a new charge on ``card`` (None: no such token), in this order:

    1. the run's transient fault (503, nothing applied);
    2. an unknown token (declined);
    3. the card's behaviour: ``issuer_unavailable`` (503), ``unavailable_first_request`` while
       ``first_request`` (the first request id naming the card, 503), an unspent ``timeout_once`` (nothing
       applied, a late 503), an unspent ``lost_answer`` (applied, answered late);
    4. an expired card (declined ``card_expired``, by the token's stored expiry and ``today``);
    5. a ``decline_*`` behaviour (declined with its reason);
    6. otherwise captured.

    The run's lost-answer fault makes whatever is applied answer late.
    """
    if run_fault is RunFault.TRANSIENT:
        return ChargeDecision(Outcome.UNAVAILABLE, message="the network is busy; nothing was charged, try again")
    late = run_fault is RunFault.LOST_ANSWER
    if card is None:
        return ChargeDecision(Outcome.DECLINE, NetworkDecline.UNKNOWN_TOKEN, answer_late=late, message="no such token")
    behaviour = card.behaviour
    if behaviour is Behaviour.ISSUER_UNAVAILABLE or (
        behaviour is Behaviour.UNAVAILABLE_FIRST_REQUEST and first_request
    ):
        return ChargeDecision(Outcome.UNAVAILABLE, message="the issuer is unavailable; nothing was charged")
    spends = behaviour in ONE_SHOT_BEHAVIOURS and not one_shot_spent
    if spends and behaviour is Behaviour.TIMEOUT_ONCE:
        return ChargeDecision(
            Outcome.TIME_OUT, spends_one_shot=True, message="the issuer did not answer in time; nothing was charged"
        )
    late = late or (spends and behaviour is Behaviour.LOST_ANSWER)
    month, year = card.expiry_month, card.expiry_year
    if month is not None and year is not None and card_expired(month, year, today):
        return ChargeDecision(
            Outcome.DECLINE,
            NetworkDecline.CARD_EXPIRED,
            answer_late=late,
            spends_one_shot=spends,
            message=f"the card expired at the end of {month:02d}/{year}",
        )
    reason = DECLINING_BEHAVIOURS.get(behaviour)
    if reason is not None:
        return ChargeDecision(Outcome.DECLINE, reason, answer_late=late, message=f"declined: {reason.value}")
    return ChargeDecision(Outcome.CAPTURE, answer_late=late, spends_one_shot=spends)
