"""N2: one email per notification, and how its delivery moves.

A delivery is stored **in the same batch as the notification**, before anything is sent::

    held ──(the recipient's profile arrives: its release names the address)──┐
      │                                                                     ▼
      │                    pending ──SMTP 250──────────────────────────────▶ sent (final)
      │                      │  ▲
      │                      │  └── unavailable (no connection, timeout, 4xx): attempts += 1,
      │                      │      not_before = now + backoff with jitter, while attempts < policy.attempts
      │                      ├──── refused (5xx), or still unavailable after policy.attempts ──▶ dead (with the reason)
      └──────────────────────┴──── its order became final and it is a reminder ──▶ suppressed (final)
    dead ──RedriveNotification (operator)──▶ pending (attempts from 0)

A ``held`` delivery is one for a recipient whose profile (language, address, preferences) had
not arrived when the notice was made: it has no address yet. When the profile arrives, the
notice is rendered again in the profile's language and *released* (services/notification/
handlers/events.py): the release names the address when the holder's preferences allow email,
and the worker then sends it like a pending one; its first answer makes it pending or sent. A
release without an address leaves it held: never sent.

The email worker only sends ``pending`` rows (and released ``held`` ones) that are due, and
reports each answer back as a ``RecordEmailOutcome`` naming the attempt it answers; an answer
for another attempt (late, or repeated) changes nothing. Every email carries a Message-ID made from the notification id, the
same on every attempt (see services/notification/worker.py for the exactly-once argument).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from contracts import EmailOutcome
from services.notification.domain.rules import NoticeKind

MESSAGE_ID_DOMAIN = "notifications.tradeguard"


def message_id_for(notification_id: str) -> str:
    """Deterministic: every attempt at one notification's email carries the same Message-ID."""
    return f"<{notification_id}@{MESSAGE_ID_DOMAIN}>"


class DeliveryState(StrEnum):
    HELD = "held"  # the recipient's profile has not arrived: no address yet
    PENDING = "pending"
    SENT = "sent"
    DEAD = "dead"
    SUPPRESSED = "suppressed"


class Step(StrEnum):
    """What recording an answer led to (the handler emits an event for the final ones)."""

    DELIVERED = "delivered"
    RETRY = "retry"
    DEAD = "dead"
    IGNORED = "ignored"


_SENDABLE = frozenset({DeliveryState.PENDING, DeliveryState.HELD})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff from ``first`` up to ``cap``, jittered, for at most ``attempts`` tries."""

    first: timedelta = timedelta(seconds=2)
    cap: timedelta = timedelta(minutes=5)
    attempts: int = 10

    def delay(self, notification_id: str, attempt: int) -> timedelta:
        """The wait after failed attempt ``attempt`` (1-based): in [ceiling / 2, ceiling].

        The jitter is drawn from the notification id and the attempt, not a random source, so a
        re-run of the handler decides the same, while the deliveries that failed together
        (the server went down) spread out instead of retrying in lockstep.
        """
        ceiling: timedelta = min(self.cap, self.first * 2 ** (attempt - 1))
        digest = hashlib.sha256(f"{notification_id}:{attempt}".encode()).digest()
        fraction = int.from_bytes(digest[:4], "big") / 2**32
        jittered: timedelta = ceiling / 2 + ceiling * (fraction / 2)
        return jittered


@dataclass(slots=True)
class EmailDelivery:
    notification_id: str
    recipient_id: str
    address: str | None  # None while held: the release names it
    message_id: str
    kind: NoticeKind
    order_id: str | None
    state: DeliveryState = DeliveryState.PENDING
    attempts: int = 0
    not_before: datetime | None = None
    last_error: str | None = None
    sent_at: datetime | None = None

    @classmethod
    def new(
        cls, notification_id: str, recipient_id: str, address: str, kind: NoticeKind, order_id: str | None
    ) -> EmailDelivery:
        return cls(notification_id, recipient_id, address, message_id_for(notification_id), kind, order_id)

    @classmethod
    def held(cls, notification_id: str, recipient_id: str, kind: NoticeKind, order_id: str | None) -> EmailDelivery:
        """For a recipient whose profile has not arrived: sent only once a release names the address."""
        message_id = message_id_for(notification_id)
        return cls(notification_id, recipient_id, None, message_id, kind, order_id, state=DeliveryState.HELD)

    @property
    def next_attempt(self) -> int:
        return self.attempts + 1

    def record(self, outcome: EmailOutcome, attempt: int, detail: str, now: datetime, policy: RetryPolicy) -> Step:
        """Apply the server's answer to attempt ``attempt``; see the module docstring."""
        if self.state not in _SENDABLE or attempt != self.next_attempt:
            return Step.IGNORED
        self.state, self.attempts = DeliveryState.PENDING, attempt  # a released held one: sent once now
        if outcome is EmailOutcome.SENT:
            self.state, self.sent_at, self.last_error = DeliveryState.SENT, now, None
            return Step.DELIVERED
        if outcome is EmailOutcome.REFUSED:
            return self._give_up(f"refused by the mail server: {detail}")
        if attempt >= policy.attempts:
            return self._give_up(f"mail server unavailable after {attempt} attempts: {detail}")
        self.last_error = detail[:500]
        self.not_before = now + policy.delay(self.notification_id, attempt)
        return Step.RETRY

    def _give_up(self, reason: str) -> Step:
        self.state, self.last_error, self.not_before = DeliveryState.DEAD, reason[:500], None
        return Step.DEAD

    def suppress(self) -> bool:
        """A reminder whose order is final: not sent (unless it already was)."""
        if self.state not in _SENDABLE:
            return False
        self.state = DeliveryState.SUPPRESSED
        return True

    def redrive(self) -> bool:
        """An operator sends a dead-lettered email again, with fresh attempts."""
        if self.state is not DeliveryState.DEAD:
            return False
        self.state, self.attempts, self.not_before = DeliveryState.PENDING, 0, None
        return True
