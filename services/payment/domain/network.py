"""Talking to the funding network without ever charging twice (P1, P4).

A card or bank payment becomes a :class:`NetworkRequest`, stored with the payment in the
batch that decided it. The payment service's network worker (services/payment/worker.py)
sends due requests through the port and hands each answer back as a ``RecordNetworkAnswer``
command, which :meth:`NetworkRequest.answer` turns into the next step:

==============  ============================================================================
answer          next step
==============  ============================================================================
charged         the payment is captured
declined        the payment fails, permanently, with the issuer's reason
unavailable     nothing was applied: the charge is retried after a backoff, up to
                ``max_attempts``; then the payment fails, transiently (``issuer_unavailable``)
unknown         the request left and no answer came: ask its status, and nothing else, first
not_found       the status says it was never applied: the charge may be sent again
==============  ============================================================================

Every charge carries the same ``request_id`` (the network's idempotency key), so even a
charge that *was* applied and is sent again returns the first charge, never a second one.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from contracts import Money, NetworkOutcome, NetworkRequestKind

MAX_ATTEMPTS = 4
FIRST_BACKOFF = timedelta(milliseconds=200)
INQUIRY_DELAY = timedelta(milliseconds=100)


class RequestState(StrEnum):
    DUE = "due"  # the worker sends it at not_before
    DONE = "done"


class Step(StrEnum):
    """What an answer means for the payment."""

    CAPTURE = "capture"
    FAIL_PERMANENTLY = "fail_permanently"
    FAIL_TRANSIENTLY = "fail_transiently"
    WAIT = "wait"  # the request was rescheduled (a retry or an inquiry)
    IGNORE = "ignore"  # a late or repeated answer: already decided


@dataclass(slots=True)
class NetworkRequest:
    """One charge of one order on the funding network, and where asking about it stands."""

    request_id: str
    order_id: str
    token: str
    amount: Money
    kind: NetworkRequestKind = NetworkRequestKind.CHARGE
    state: RequestState = RequestState.DUE
    not_before: datetime | None = None
    attempts: int = 0  # charges answered so far (an inquiry is not a charge)
    charge_id: str | None = None
    last_reason: str | None = None

    def answer(self, kind: NetworkRequestKind, outcome: NetworkOutcome, reason: str | None, now: datetime) -> Step:
        """Apply one answer; only an answer to the request as it stands now counts."""
        if self.state is RequestState.DONE or kind is not self.kind:
            return Step.IGNORE
        if kind is NetworkRequestKind.CHARGE:
            self.attempts += 1  # an answer to a charge: one more charge was sent
        self.last_reason = reason
        if outcome is NetworkOutcome.CHARGED:
            self.state = RequestState.DONE
            return Step.CAPTURE
        if outcome is NetworkOutcome.DECLINED:
            self.state = RequestState.DONE
            return Step.FAIL_PERMANENTLY
        if outcome is NetworkOutcome.UNKNOWN:
            self.kind, self.not_before = NetworkRequestKind.STATUS, now + INQUIRY_DELAY
            return Step.WAIT
        # unavailable (nothing applied) or not_found (never applied): a charge may go again
        return self._retry(now)

    def _retry(self, now: datetime) -> Step:
        if self.attempts >= MAX_ATTEMPTS:
            self.state = RequestState.DONE
            return Step.FAIL_TRANSIENTLY
        self.kind = NetworkRequestKind.CHARGE
        self.not_before = now + backoff(self.attempts, self.request_id)
        return Step.WAIT


def backoff(attempt: int, request_id: str) -> timedelta:
    """Exponential with full jitter, seeded by the request so a run replays."""
    ceiling = FIRST_BACKOFF * (2 ** max(0, attempt - 1))
    share = 0.5 + random.Random(f"{request_id}:{attempt}").random() / 2  # noqa: S311 - jitter, not secrecy
    return timedelta(seconds=ceiling.total_seconds() * share)
