"""N1: which events become notifications, for whom, of what category: one declarative table.

:data:`RULES` is the whole answer to "who hears of what". Each row names an event type, the
field holding the recipient's account id, the kind of notice (its template), the category
(which decides the channels and what the holder may opt out of), how the notice's reference is
made (so the same fact told twice is one notice), an optional condition on the event, an
optional condition on what the service already told of the order (``superseded``: a payment
failure is not told after its success was), and whether it is a *reminder*: a notice asking for
an action on an order that goes stale once the order is final (it is suppressed, not sent).

Every other event type a contract defines is in :data:`NOT_USER_FACING` with the reason, and
every order status no rule tells is in :data:`UNTOLD_ORDER_STATUSES`; tests fail when a contract
event or status is in neither, so a new one cannot be forgotten.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from contracts import (
    AccountRegistered,
    AccountStatus,
    AccountStatusChanged,
    AutoReleaseApproaching,
    DisputeAnswered,
    DisputeOpened,
    DisputeResolved,
    Event,
    FundingSourceAdded,
    FundingSourceRemoved,
    FundsHeld,
    FundsReleased,
    IdentityRejected,
    IdentityVerified,
    MarketplaceAccessGranted,
    MarketplaceAccessRevoked,
    OrderStatus,
    OrderStatusChanged,
    PaymentCaptured,
    PaymentFailed,
    PaymentPinSet,
    PaymentRefunded,
    ProtectionExtended,
    RefundFailed,
    SuspiciousActivityDetected,
    TotpEnrolled,
    WalletCredited,
    WalletFunded,
)


class Category(StrEnum):
    """What a notice is about; it decides the channels (see ``domain.recipients``)."""

    SECURITY = "security"  # never opted out of, on any channel
    ACCOUNT = "account"  # the account's own state: verification, activation
    TRANSACTIONAL = "transactional"  # money moved or an order changed
    MARKETING = "marketing"  # welcome and tips: the holder may opt out of these on every channel


class NoticeKind(StrEnum):
    WELCOME = "welcome"
    ACCOUNT_ACTIVATED = "account_activated"
    ACCOUNT_LOCKED = "account_locked"
    ACCOUNT_RESTRICTED = "account_restricted"
    ACCOUNT_UNLOCKED = "account_unlocked"
    ACCOUNT_CLOSED = "account_closed"
    SUSPICIOUS_ACTIVITY = "suspicious_activity"
    IDENTITY_VERIFIED = "identity_verified"
    IDENTITY_REJECTED = "identity_rejected"
    MARKETPLACE_ACCESS_GRANTED = "marketplace_access_granted"
    MARKETPLACE_ACCESS_REVOKED = "marketplace_access_revoked"
    FUNDING_SOURCE_ADDED = "funding_source_added"
    FUNDING_SOURCE_REMOVED = "funding_source_removed"
    TOTP_ENROLLED = "totp_enrolled"
    PAYMENT_PIN_SET = "payment_pin_set"
    WALLET_FUNDED = "wallet_funded"
    PAYOUT_CREDITED = "payout_credited"
    PAYMENT_SUCCEEDED = "payment_succeeded"
    PAYMENT_FAILED = "payment_failed"
    PAYMENT_REFUNDED = "payment_refunded"
    REFUND_DELAYED = "refund_delayed"
    FUNDS_HELD = "funds_held"
    ORDER_PAID = "order_paid"
    FUNDS_RELEASED = "funds_released"
    ORDER_COMPLETED = "order_completed"
    ORDER_CANCELLED = "order_cancelled"
    AUTO_RELEASE_APPROACHING = "auto_release_approaching"
    PROTECTION_EXTENDED = "protection_extended"
    PROTECTION_EXTENDED_SELLER = "protection_extended_seller"
    DISPUTE_OPENED = "dispute_opened"
    DISPUTE_OPENED_SELLER = "dispute_opened_seller"
    DISPUTE_ANSWERED = "dispute_answered"
    DISPUTE_RESOLVED = "dispute_resolved"
    DISPUTE_RESOLVED_SELLER = "dispute_resolved_seller"


Reference = Callable[[Any, Any], str]
"""(event, envelope) -> the notice's reference: the same fact told twice gives the same one."""


def by_order(event: Any, _envelope: Any) -> str:
    """One notice of its kind per order and recipient."""
    return str(event.order_id)


def by_refund(event: Any, _envelope: Any) -> str:
    return f"{event.order_id}:{event.refund_id}"


def by_attempt(event: Any, _envelope: Any) -> str:
    """One per payment attempt of the order (S2: the buyer may pay again after a decline). The
    first attempt keeps the plain order id, the reference notices had before attempts existed."""
    return str(event.order_id) if event.attempt == 1 else f"{event.order_id}:attempt-{event.attempt}"


def by_dispute(event: Any, _envelope: Any) -> str:
    return f"{event.order_id}:{event.dispute_id}"


def by_cause(_event: Any, envelope: Any) -> str:
    """One per occurrence: events re-published for the same cause keep their idempotency key."""
    return str(envelope.idempotency_key)


def _status(*statuses: AccountStatus) -> Callable[[AccountStatusChanged], bool]:
    return lambda event: event.status in statuses


def _unlocked(event: AccountStatusChanged) -> bool:
    back = (AccountStatus.LOCKED, AccountStatus.RESTRICTED)
    return event.status is AccountStatus.ACTIVE and event.previous_status in back


def _activated(event: AccountStatusChanged) -> bool:
    return event.status is AccountStatus.ACTIVE and event.previous_status in (None, AccountStatus.PENDING)


def _order_status(status: OrderStatus) -> Callable[[OrderStatusChanged], bool]:
    return lambda event: event.status is status


def _declined(event: PaymentFailed) -> bool:
    """A transient failure is retried by the saga (S2) and not told: only its outcome is (the
    capture, or the cancellation once the retries are spent, with the reason)."""
    return event.permanent


class ToldOfOrder(Protocol):
    """What the service already told of an order (domain.orders.OrderCopy)."""

    @property
    def captured(self) -> bool: ...

    @property
    def is_final(self) -> bool: ...


def _after_capture_or_end(order: ToldOfOrder) -> bool:
    """A failure read after the payment succeeded (a late or repeated answer of an earlier
    attempt) or after the order ended would contradict what the buyer was told: not told."""
    return order.captured or order.is_final


@dataclass(frozen=True, slots=True)
class Rule:
    """One row of the table: ``event`` tells ``recipient`` (a field of it) a ``kind`` of notice."""

    event: type[Event]
    kind: NoticeKind
    category: Category
    recipient: str = "account_id"
    reference: Reference = by_cause
    when: Callable[[Any], bool] | None = None
    reminder: bool = False
    """Asks for an action on an order: suppressed once the order is completed, cancelled or refunded.
    Its reference must be the order id: the status change that ends the order finds it by it."""
    superseded: Callable[[ToldOfOrder], bool] | None = None
    """True when what was told of the order already makes this notice wrong to tell (not told)."""

    def applies(self, event: Event) -> bool:
        return isinstance(event, self.event) and (self.when is None or self.when(event))


S, A, T, M = Category.SECURITY, Category.ACCOUNT, Category.TRANSACTIONAL, Category.MARKETING
K = NoticeKind

RULES: tuple[Rule, ...] = (
    # accounts (A1, A2, A5, A6)
    Rule(AccountRegistered, K.WELCOME, M),
    Rule(AccountStatusChanged, K.ACCOUNT_ACTIVATED, A, when=_activated),
    Rule(AccountStatusChanged, K.ACCOUNT_LOCKED, S, when=_status(AccountStatus.LOCKED)),
    Rule(AccountStatusChanged, K.ACCOUNT_RESTRICTED, S, when=_status(AccountStatus.RESTRICTED)),
    Rule(AccountStatusChanged, K.ACCOUNT_UNLOCKED, S, when=_unlocked),
    Rule(AccountStatusChanged, K.ACCOUNT_CLOSED, S, when=_status(AccountStatus.CLOSED)),
    Rule(SuspiciousActivityDetected, K.SUSPICIOUS_ACTIVITY, S),
    Rule(IdentityVerified, K.IDENTITY_VERIFIED, A),
    Rule(IdentityRejected, K.IDENTITY_REJECTED, A),
    Rule(MarketplaceAccessGranted, K.MARKETPLACE_ACCESS_GRANTED, S),
    Rule(MarketplaceAccessRevoked, K.MARKETPLACE_ACCESS_REVOKED, S),
    Rule(FundingSourceAdded, K.FUNDING_SOURCE_ADDED, S),
    Rule(FundingSourceRemoved, K.FUNDING_SOURCE_REMOVED, S),
    Rule(TotpEnrolled, K.TOTP_ENROLLED, S),
    Rule(PaymentPinSet, K.PAYMENT_PIN_SET, S),
    # wallets
    Rule(WalletFunded, K.WALLET_FUNDED, T),
    Rule(WalletCredited, K.PAYOUT_CREDITED, T),
    # payments (P1, P4, P6)
    Rule(PaymentCaptured, K.PAYMENT_SUCCEEDED, T, recipient="buyer_id", reference=by_order),
    Rule(
        PaymentFailed,
        K.PAYMENT_FAILED,
        T,
        recipient="buyer_id",
        reference=by_attempt,
        when=_declined,
        superseded=_after_capture_or_end,
    ),
    Rule(PaymentRefunded, K.PAYMENT_REFUNDED, T, recipient="buyer_id", reference=by_refund),
    Rule(RefundFailed, K.REFUND_DELAYED, T, recipient="buyer_id", reference=by_refund),
    # escrow (E) and the order (S1)
    Rule(FundsHeld, K.FUNDS_HELD, T, recipient="buyer_id", reference=by_order, reminder=True),
    Rule(FundsHeld, K.ORDER_PAID, T, recipient="seller_id", reference=by_order, reminder=True),
    Rule(FundsReleased, K.FUNDS_RELEASED, T, recipient="seller_id", reference=by_order),
    Rule(
        OrderStatusChanged,
        K.ORDER_COMPLETED,
        T,
        recipient="buyer_id",
        reference=by_order,
        when=_order_status(OrderStatus.COMPLETED),
    ),
    Rule(
        OrderStatusChanged,
        K.ORDER_CANCELLED,
        T,
        recipient="buyer_id",
        reference=by_order,
        when=_order_status(OrderStatus.CANCELLED),
    ),
    # the buyer's protection (E2, S4): one reminder per order, stale once the order is final
    Rule(
        AutoReleaseApproaching, K.AUTO_RELEASE_APPROACHING, T, recipient="buyer_id", reference=by_order, reminder=True
    ),
    Rule(ProtectionExtended, K.PROTECTION_EXTENDED, T, recipient="buyer_id", reference=by_order),
    Rule(ProtectionExtended, K.PROTECTION_EXTENDED_SELLER, T, recipient="seller_id", reference=by_order),
    # disputes (E3); the seller's asks for an answer by a deadline: a reminder, so it goes by the order
    Rule(DisputeOpened, K.DISPUTE_OPENED, T, recipient="buyer_id", reference=by_dispute),
    Rule(DisputeOpened, K.DISPUTE_OPENED_SELLER, T, recipient="seller_id", reference=by_order, reminder=True),
    Rule(DisputeAnswered, K.DISPUTE_ANSWERED, T, recipient="buyer_id", reference=by_dispute),
    Rule(DisputeResolved, K.DISPUTE_RESOLVED, T, recipient="buyer_id", reference=by_dispute),
    Rule(DisputeResolved, K.DISPUTE_RESOLVED_SELLER, T, recipient="seller_id", reference=by_dispute),
)

NOT_USER_FACING: dict[str, str] = {
    "PhoneCodeSent": "the code goes by SMS itself; a notice would only repeat that it was sent",
    "PhoneVerificationFailed": "the app shows it as the answer to the code just typed",
    "SignedIn": "the holder's own action; a new country is a SuspiciousActivityDetected",
    "SecurityCheckFailed": "each one is shown where it happened; the lock (AccountStatusChanged) is told",
    "IdentitySubmitted": "the result (IdentityVerified or IdentityRejected) is what the holder hears of",
    "DefaultFundingSourceChanged": "the holder's own choice, shown in the app; no money or access changes",
    "PaymentAuthorized": "PaymentCaptured (or PaymentFailed) follows and is told; read for the card shown",
    "PaymentAuthorizationDeclined": "PaymentFailed follows with the same reason and is told",
    "PriceQuoted": "an answer to the marketplace's quote request, shown at checkout",
    "FundsReturned": "PaymentRefunded tells the buyer what came back and where",
    "CommandRejected": "the answer to a command, shown by the client that sent it",
    "NotificationEmailed": "about a notification, not a fact the holder needs to hear of again",
    "NotificationUndeliverable": "for the operator (tradeguard notifications undelivered)",
    "FundsFrozen": "escrow's side of a dispute: DisputeOpened tells both parties the funds are frozen",
    "OperatorActionTaken": "the audit of an operator's action; its effect reaches people as the status change",
}

UNTOLD_ORDER_STATUSES: dict[OrderStatus, str] = {
    OrderStatus.CREATED: "the checkout is the buyer's own action, answered by the marketplace",
    OrderStatus.PAYMENT_PENDING: "a step on the way; the payment's outcome is told",
    OrderStatus.PAID: "PaymentCaptured tells the buyer, FundsHeld the seller",
    OrderStatus.IN_ESCROW: "FundsHeld tells both parties",
    OrderStatus.RELEASING: "a step on the way; FundsReleased and the completion are told",
    OrderStatus.REFUNDED: "each refund is told by PaymentRefunded, with where the money went",
    # The saga retries a transient failure by itself: nothing for the buyer to do, and telling each
    # try would only alarm. Its outcome is told: the capture, or the cancellation with the reason.
    OrderStatus.PAYMENT_RETRYING: "the saga retries a transient failure itself; its outcome is told",
    # A decline is told by PaymentFailed (with the reason and the next step); the status would
    # tell the same thing twice, and without the reason.
    OrderStatus.PAYMENT_FAILED: "PaymentFailed (permanent) tells the decline with the reason and what to do",
    # DisputeOpened tells both parties, with the reason and the seller's deadline.
    OrderStatus.DISPUTED: "DisputeOpened tells both parties, with the reason and the deadline",
    # The saga is giving back money after a failed step (S3): the refund is told when it lands
    # (PaymentRefunded) and the end of the order by its cancellation; the step itself is internal.
    OrderStatus.COMPENSATING: "internal (S3); the refund and the cancellation that end it are told",
}

REMINDER_KINDS: frozenset[NoticeKind] = frozenset(rule.kind for rule in RULES if rule.reminder)
FINAL_ORDER_STATUSES = frozenset({OrderStatus.COMPLETED, OrderStatus.CANCELLED, OrderStatus.REFUNDED})
NOTIFIED_EVENTS: tuple[type[Event], ...] = tuple(dict.fromkeys(rule.event for rule in RULES))
CATEGORY_OF: dict[NoticeKind, Category] = {rule.kind: rule.category for rule in RULES}
RULE_OF: dict[NoticeKind, Rule] = {rule.kind: rule for rule in RULES}
"""Each kind has one rule (a test checks it): a held notice names its rule by its kind."""
_NAMESPACE = uuid.UUID("5d3c6f3e-6a7b-4f0c-9a43-2f4f1a7e0b11")


def rules_for(event: Event) -> tuple[Rule, ...]:
    return tuple(rule for rule in RULES if rule.applies(event))


def notification_id(recipient_id: str, kind: NoticeKind, reference: str) -> uuid.UUID:
    """Deterministic: the same notice always has the same id, and its email the same Message-ID."""
    return uuid.uuid5(_NAMESPACE, f"{recipient_id}|{kind.value}|{reference}")
