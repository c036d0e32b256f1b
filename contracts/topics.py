"""Every Kafka topic the system uses, its partition count, what its records are keyed by and
how long the broker keeps them.

Keys keep one order's (or one wallet's) messages in order on one partition while
different orders are spread over the partitions and proceed concurrently.

Retention (issue 19, docs/operations.md): commands and events are kept 7 days, dead letters
30 days (an operator has a month to look at one and re-drive it). No topic is a state log: each
carries messages of several types per key, and every consumer keeps what it needs in its own
database, so compaction (the last record per key) would drop facts no one has read yet; every
topic is ``delete``. A segment rolls daily, so the broker deletes expired records within a day of
their window (it deletes whole segments only: with Kafka's defaults, a week-old segment of 1 GiB
could outlive its window by another week).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Key(StrEnum):
    """What a topic's record key is."""

    ORDER_ID = "order_id"
    ACCOUNT_ID = "account_id"
    ORIGINAL_KEY = "key of the original record"


_DAY_MS = 24 * 60 * 60 * 1000


@dataclass(frozen=True, slots=True)
class Retention:
    """How long the broker keeps a topic's records and how it cuts its log into segments
    (the topic configs ``retention.ms``, ``segment.ms``, ``segment.bytes``, ``cleanup.policy``)."""

    retention_ms: int
    segment_ms: int = _DAY_MS
    segment_bytes: int = 128 * 1024 * 1024
    cleanup_policy: str = "delete"

    def configs(self) -> dict[str, str]:
        return {
            "retention.ms": str(self.retention_ms),
            "segment.ms": str(self.segment_ms),
            "segment.bytes": str(self.segment_bytes),
            "cleanup.policy": self.cleanup_policy,
        }


MESSAGE_RETENTION = Retention(retention_ms=7 * _DAY_MS)
"""Commands and events: 7 days, far beyond any consumer's lag, and the furthest back a service's
database restored from a backup can replay from its stored offsets."""
DEAD_LETTER_RETENTION = Retention(retention_ms=30 * _DAY_MS)
"""Dead letters: 30 days to look at one and re-drive it (``tradeguard dead-letters``)."""


@dataclass(frozen=True, slots=True)
class Topic:
    """A topic with the facts needed to create it and to publish to it."""

    name: str
    partitions: int
    key: Key
    description: str
    retention: Retention = MESSAGE_RETENTION


ORDER_COMMANDS = Topic(
    "tradeguard.order.commands",
    6,
    Key.ORDER_ID,
    "Commands to the order saga: checkout, pay again, confirm receipt, refunds, protection extensions and "
    "disputes from the marketplace; dispute resolutions and order actions from operators; the saga's own "
    "deadline nudges (S4).",
)
ORDER_EVENTS = Topic(
    "tradeguard.order.events",
    6,
    Key.ORDER_ID,
    "Order lifecycle as the saga sees it, for the marketplace and notifications: status changes, "
    "reminders, protection extensions, disputes and operator actions.",
)
ACCOUNT_COMMANDS = Topic(
    "tradeguard.account.commands",
    6,
    Key.ACCOUNT_ID,
    "Account commands: registration, phone codes, sign-in, identity verification, funding sources, "
    "marketplace grants, PIN and TOTP, operator actions (restrict, unlock, identity review), wallet "
    "top-ups and seller credits, and the payment service's AuthorizePayment.",
)
ACCOUNT_EVENTS = Topic(
    "tradeguard.account.events",
    6,
    Key.ACCOUNT_ID,
    "Account facts for read copies and notifications: registrations, status changes (with who and why), "
    "verification levels and limits, funding sources, grants, security events, wallet balance changes, "
    "and the answers to AuthorizePayment.",
)
PAYMENT_COMMANDS = Topic(
    "tradeguard.payment.commands",
    6,
    Key.ORDER_ID,
    "Payment captures requested by the saga (with the buyer's source and sealed security proof).",
)
PAYMENT_EVENTS = Topic(
    "tradeguard.payment.events",
    6,
    Key.ORDER_ID,
    "Payments captured or failed.",
)
ESCROW_COMMANDS = Topic(
    "tradeguard.escrow.commands",
    6,
    Key.ORDER_ID,
    "Escrow holds, releases, returns and dispute freezes requested by the saga.",
)
ESCROW_EVENTS = Topic(
    "tradeguard.escrow.events",
    6,
    Key.ORDER_ID,
    "Funds held in, frozen in, returned from and released from escrow.",
)
NOTIFICATION_COMMANDS = Topic(
    "tradeguard.notification.commands",
    6,
    Key.ACCOUNT_ID,
    "Notification commands: the holder's channel preferences and read marks, the email worker's "
    "delivery outcomes and the operator's re-drives (N2).",
)
NOTIFICATION_EVENTS = Topic(
    "tradeguard.notification.events",
    6,
    Key.ACCOUNT_ID,
    "Emails delivered or given up on (dead-lettered with the reason), and refused notification commands (N2).",
)
DEAD_LETTER = Topic(
    "tradeguard.dead-letter",
    3,
    Key.ORIGINAL_KEY,
    "Records no consumer could process: the original bytes, with the reason in headers.",
    DEAD_LETTER_RETENTION,
)

ALL_TOPICS: tuple[Topic, ...] = (
    ORDER_COMMANDS,
    ORDER_EVENTS,
    ACCOUNT_COMMANDS,
    ACCOUNT_EVENTS,
    PAYMENT_COMMANDS,
    PAYMENT_EVENTS,
    ESCROW_COMMANDS,
    ESCROW_EVENTS,
    NOTIFICATION_COMMANDS,
    NOTIFICATION_EVENTS,
    DEAD_LETTER,
)

# Headers a dead-lettered record carries next to its original key, value and headers.
DEAD_LETTER_REASON = "tg-dead-letter-reason"
DEAD_LETTER_CLASS = "tg-dead-letter-class"  # "record" (could not be read) or "bug" (handler kept failing)
DEAD_LETTER_SOURCE = "tg-dead-letter-source"  # "topic/partition/offset"
DEAD_LETTER_CONSUMER = "tg-dead-letter-consumer"  # the service that gave up on it
DEAD_LETTER_AT = "tg-dead-letter-at"  # ISO 8601, UTC
DEAD_LETTER_HEADER_NAMES = (
    DEAD_LETTER_REASON,
    DEAD_LETTER_CLASS,
    DEAD_LETTER_SOURCE,
    DEAD_LETTER_CONSUMER,
    DEAD_LETTER_AT,
)
# Set by `tradeguard dead-letters redrive` on the re-published record: how many times it was re-driven.
REDRIVE_COUNT = "tg-redrive-count"
# Header naming the message type, so consumers can skip what they do not handle unparsed.
MESSAGE_TYPE_HEADER = "tg-type"
SIGNER_HEADER = "tg-signer"
"""The principal that made the record (X9, shared/signing.py)."""
MAC_HEADER_PREFIX = "tg-mac-"
"""``tg-mac-<consumer>``: the MAC its producer made for that consumer of the record's topic."""
TRACEPARENT_HEADER = "traceparent"
"""W3C trace context of the span that sent the record (X5, shared/tracing.py), when traced."""
