"""Talking to the funding network without ever charging or refunding twice (P1, P4, P6).

A card or bank payment, and the card or bank part of a refund, becomes a :class:`NetworkRequest`,
stored with the payment (or refund) in the batch that decided it. The payment service's network
worker (services/payment/worker.py) sends due requests through the port and hands each answer
back as a ``RecordNetworkAnswer`` command, which :meth:`NetworkRequest.answer` turns into the
next step. A request is an *operation* (``charge`` or ``refund``) and, after an unknown outcome,
the inquiry about it (``status`` or ``refund_status``):

==============  ============================================================================
answer          next step
==============  ============================================================================
charged         (a charge) the payment is captured
refunded        (a refund) the card or bank part is given back
declined        permanent: the payment fails with the issuer's reason, or the refund fails
                (an operator's to settle)
unavailable     nothing was applied: the operation is retried after a backoff, up to
                ``MAX_ATTEMPTS``; then the payment fails, transiently (``issuer_unavailable``),
                or the refund fails and goes to an operator
unknown         the request left and no answer came: ask its status, and nothing else, first
not_found       the status says it was never applied: the operation may be sent again
==============  ============================================================================

**An unknown charge is never given up.** A payment that gives up on a charge the network did
apply keeps the buyer's money with no order (or, once the saga tries again as a new attempt
with a new request id, charges the buyer twice). So once the last attempt's outcome is
unknown, the charge's status is asked until it says charged, declined or not found; an
inquiry that finds the issuer away, or gets no answer, proves nothing, and is asked again
with a backoff that grows to ``MAX_INQUIRY_BACKOFF``. Meanwhile the saga's payment window
closes the order, and a charge found later is given back by its compensation. A refund may
be given up unknown: it is retried under the same request id (the saga's retry or an
operator's), which finds it applied if it was, so nothing is given back twice.

One race is left that no inquiry closes: the same attempt sent twice (a worker restarted
before the first send's answer was recorded), the first finding the issuer away and the
second charging. The first answer fails the payment; the second arrives at a request already
decided. Such a *late charge* is given back (handlers/payments.py, ``reverse_late_charge``):
money the network took for no payment of ours is refunded on the network, never kept.

Every attempt carries the same ``request_id`` (the network's idempotency key), so even an
operation that *was* applied and is sent again returns the first result, never a second one.
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
MAX_INQUIRY_BACKOFF = timedelta(seconds=30)


class RequestState(StrEnum):
    DUE = "due"  # the worker sends it at not_before
    DONE = "done"


class Step(StrEnum):
    """What an answer means for the payment (or the refund) it was sent for."""

    CAPTURE = "capture"
    REFUNDED = "refunded"  # the refund's card or bank part was given back
    FAIL_PERMANENTLY = "fail_permanently"
    FAIL_TRANSIENTLY = "fail_transiently"
    WAIT = "wait"  # the request was rescheduled (a retry or an inquiry)
    IGNORE = "ignore"  # a late or repeated answer: already decided


# What an inquiry asks about, what to ask after an unknown outcome, and what says it is done.
_OPERATION_OF = {
    NetworkRequestKind.STATUS: NetworkRequestKind.CHARGE,
    NetworkRequestKind.REFUND_STATUS: NetworkRequestKind.REFUND,
}
_INQUIRY_OF = {
    NetworkRequestKind.CHARGE: NetworkRequestKind.STATUS,
    NetworkRequestKind.REFUND: NetworkRequestKind.REFUND_STATUS,
}
_DONE = {
    NetworkRequestKind.CHARGE: (NetworkOutcome.CHARGED, Step.CAPTURE),
    NetworkRequestKind.REFUND: (NetworkOutcome.REFUNDED, Step.REFUNDED),
}
REFUND_KINDS = frozenset({NetworkRequestKind.REFUND, NetworkRequestKind.REFUND_STATUS})


@dataclass(slots=True)
class NetworkRequest:
    """One charge of one order, or one refund's card or bank part, on the funding network, and
    where asking about it stands (``charge_id``: the charge a refund gives back)."""

    request_id: str
    order_id: str
    token: str
    amount: Money
    kind: NetworkRequestKind = NetworkRequestKind.CHARGE
    state: RequestState = RequestState.DUE
    not_before: datetime | None = None
    attempts: int = 0  # charges or refunds answered so far (an inquiry is not one)
    inquiries: int = 0  # status inquiries that proved nothing (their backoff grows with it)
    charge_id: str | None = None
    last_reason: str | None = None

    @property
    def operation(self) -> NetworkRequestKind:
        """What the request does on the network (charge or refund), whether sent or asked about."""
        return _OPERATION_OF.get(self.kind, self.kind)

    def answer(self, kind: NetworkRequestKind, outcome: NetworkOutcome, reason: str | None, now: datetime) -> Step:
        """Apply one answer; only an answer to the request as it stands now counts."""
        if self.state is RequestState.DONE or kind is not self.kind:
            return Step.IGNORE
        operation = self.operation
        if kind is operation:
            self.attempts += 1  # an answer to the operation itself: one more was sent
        self.last_reason = reason
        done_by, done = _DONE[operation]
        if outcome is done_by:
            self.state = RequestState.DONE
            return done
        if outcome is NetworkOutcome.DECLINED:
            self.state = RequestState.DONE
            return Step.FAIL_PERMANENTLY
        if outcome is NetworkOutcome.UNKNOWN or self._unproven(kind, outcome):
            return self._inquire(now, after_inquiry=kind is not operation)
        # unavailable (nothing applied) or not_found (never applied): the operation may go again
        return self._retry(now)

    def send_again(self, now: datetime) -> None:
        """A request that failed, tried afresh (a refund retried, S3): the same request id, so
        the network applies it at most once whatever became of the earlier tries."""
        self.state, self.kind, self.not_before = RequestState.DUE, self.operation, now
        self.attempts = self.inquiries = 0

    def _unproven(self, kind: NetworkRequestKind, outcome: NetworkOutcome) -> bool:
        """A charge's status, asked about its last attempt, that found the issuer away: the
        outcome is still unknown, and an unknown charge is never given up (the module's note)."""
        return (
            self.operation is NetworkRequestKind.CHARGE
            and kind is NetworkRequestKind.STATUS
            and outcome is NetworkOutcome.UNAVAILABLE
            and self.attempts >= MAX_ATTEMPTS
        )

    def _retry(self, now: datetime) -> Step:
        if self.attempts >= MAX_ATTEMPTS:
            self.state = RequestState.DONE
            return Step.FAIL_TRANSIENTLY
        self.kind = self.operation
        self.not_before = now + backoff(self.attempts, self.request_id)
        return Step.WAIT

    def _inquire(self, now: datetime, *, after_inquiry: bool) -> Step:
        """Ask the status: soon after an operation, with a growing backoff after inquiries
        that proved nothing (a network that stays away is not asked ever faster)."""
        delay = INQUIRY_DELAY
        if after_inquiry:
            self.inquiries += 1
            delay = min(MAX_INQUIRY_BACKOFF, backoff(self.inquiries, self.request_id))
        self.kind, self.not_before = _INQUIRY_OF[self.operation], now + delay
        return Step.WAIT


def backoff(attempt: int, request_id: str) -> timedelta:
    """Exponential with full jitter, seeded by the request so a run replays."""
    ceiling = FIRST_BACKOFF * (2 ** min(max(0, attempt - 1), 16))  # bounded: inquiries may go on for long
    share = 0.5 + random.Random(f"{request_id}:{attempt}").random() / 2  # noqa: S311 - jitter, not secrecy
    return timedelta(seconds=ceiling.total_seconds() * share)
