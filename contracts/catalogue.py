"""The published catalogue of the contracts: JSON Schemas, a topic table and (contracts/asyncapi.py) AsyncAPI.

Pure data and functions: who publishes and who consumes what is written down here,
next to the messages, so the generated files (``scripts/export_contracts.py``) can say
it without importing any service. Everything is deterministic: the same models give
byte-identical files.
"""

from __future__ import annotations

import json
from typing import Any

from contracts import MESSAGE_TYPES
from contracts.envelope import Actor, ActorRole, Envelope, Message
from contracts.rejections import CommandRejected
from contracts.topics import (
    ACCOUNT_EVENTS,
    ALL_TOPICS,
    DEAD_LETTER,
    DEAD_LETTER_AT,
    DEAD_LETTER_CLASS,
    DEAD_LETTER_CONSUMER,
    DEAD_LETTER_REASON,
    DEAD_LETTER_SOURCE,
    ESCROW_EVENTS,
    NOTIFICATION_EVENTS,
    ORDER_EVENTS,
    PAYMENT_EVENTS,
    Topic,
)

JsonDict = dict[str, Any]

# info.version of the AsyncAPI document and the name of the released baseline (contracts/released/<version>/).
# A breaking change fails `scripts/export_contracts.py --check` and tests/unit/test_contracts.py until this is
# bumped and `--release` moves the baseline. 0.2.0: the strict wire (issue 22): no coercion, ISO 4217 codes
# that are money, per-currency bounds, message_id and occurred_at required. 0.3.0: accounts (issue 7):
# registration, verification, funding sources, grants, security; Checkout and CapturePayment name the
# marketplace (required) and may name a source and a sealed security proof; AuthorizePayment,
# PaymentAuthorized and PaymentAuthorizationDeclined replace DebitWallet, WalletDebited, WalletDebitDeclined.
# 0.4.0: pricing and refunds (issue 8): RequestQuote/PriceQuoted, the breakdown on PaymentCaptured,
# RequestRefund, ReturnFunds/FundsReturned, RefundPayment/PaymentRefunded/RefundFailed, per-funding-type
# amounts on AuthorizePayment, a reference on CreditWallet, the refunded order status; notifications
# (issue 11): preferences, inbox reads, email outcomes and redrives, an optional email on registration.
# 0.5.0: escrow settlement (issue 9): HoldFunds may carry the payment's breakdown (optional).
# 0.6.0: the saga (issue 10) and disputes (issue 9): retries and paying again (attempt numbers on the
# payment's commands and answers), timers (OrderDeadlineReached), protection reminders and extension,
# disputes (open, answer, resolve; FreezeFunds/FundsFrozen), operator actions on orders, new statuses.
CONTRACTS_VERSION = "0.8.0"

# Who publishes each message type. "marketplace" is the client side (scripts/marketplace.py): its
# checkout and its app gateway, which sends the account holder's commands; "operator" is the
# platform's staff (identity review, restrictions, unlocks).
PRODUCERS: dict[str, tuple[str, ...]] = {
    "Checkout": ("marketplace",),
    "ConfirmReceipt": ("marketplace",),
    "FundWallet": ("marketplace",),
    "RegisterAccount": ("marketplace",),
    "ResendPhoneCode": ("marketplace",),
    "VerifyPhone": ("marketplace",),
    "SignIn": ("marketplace",),
    "EnrolTotp": ("marketplace",),
    "SetPaymentPin": ("marketplace",),
    "RestrictAccount": ("operator",),
    "UnlockAccount": ("operator",),
    "CloseAccount": ("marketplace",),
    "SubmitIdentity": ("marketplace",),
    "ApproveIdentity": ("operator",),
    "RejectIdentity": ("operator",),
    "AddCard": ("marketplace",),
    "AddBankAccount": ("marketplace",),
    "SetDefaultFundingSource": ("marketplace",),
    "RemoveFundingSource": ("marketplace",),
    "GrantMarketplaceAccess": ("marketplace",),
    "RevokeMarketplaceAccess": ("marketplace",),
    "RequestQuote": ("marketplace",),
    "RequestRefund": ("marketplace",),
    "PayAgain": ("marketplace",),
    "ExtendProtection": ("marketplace",),
    "OpenDispute": ("marketplace",),
    "AnswerDispute": ("marketplace",),
    "ResolveDispute": ("operator",),
    "OperatorOrderAction": ("operator",),
    "OrderDeadlineReached": ("saga",),
    "AutoReleaseApproaching": ("saga",),
    "ProtectionExtended": ("saga",),
    "OperatorActionTaken": ("saga",),
    "DisputeOpened": ("saga",),
    "DisputeAnswered": ("saga",),
    "DisputeResolved": ("saga",),
    "FreezeFunds": ("saga",),
    "FundsFrozen": ("escrow",),
    "CapturePayment": ("saga",),
    "RefundPayment": ("saga",),
    "ReturnFunds": ("saga",),
    "HoldFunds": ("saga",),
    "ReleaseFunds": ("saga",),
    "CreditWallet": ("saga", "payment"),
    "OrderStatusChanged": ("saga",),
    "AuthorizePayment": ("payment",),
    "RecordNetworkAnswer": ("payment",),
    "ReleaseSpending": ("payment",),
    "PaymentCaptured": ("payment",),
    "PaymentFailed": ("payment",),
    "PriceQuoted": ("payment",),
    "PaymentRefunded": ("payment",),
    "RefundFailed": ("payment",),
    "WalletFunded": ("account",),
    "PaymentAuthorized": ("account",),
    "PaymentAuthorizationDeclined": ("account",),
    "AccountRegistered": ("account",),
    "PhoneCodeSent": ("account",),
    "PhoneVerificationFailed": ("account",),
    "AccountStatusChanged": ("account",),
    "SignedIn": ("account",),
    "SecurityCheckFailed": ("account",),
    "SuspiciousActivityDetected": ("account",),
    "TotpEnrolled": ("account",),
    "PaymentPinSet": ("account",),
    "IdentitySubmitted": ("account",),
    "IdentityVerified": ("account",),
    "IdentityRejected": ("account",),
    "FundingSourceAdded": ("account",),
    "DefaultFundingSourceChanged": ("account",),
    "FundingSourceRemoved": ("account",),
    "MarketplaceAccessGranted": ("account",),
    "MarketplaceAccessRevoked": ("account",),
    "WalletCredited": ("account",),
    "FundsHeld": ("escrow",),
    "FundsReleased": ("escrow",),
    "FundsReturned": ("escrow",),
    "SetNotificationPreferences": ("marketplace",),
    "MarkNotificationsRead": ("marketplace",),
    "RecordEmailOutcome": ("notification",),
    "RedriveNotification": ("operator",),
    "NotificationEmailed": ("notification",),
    "NotificationUndeliverable": ("notification",),
    "CommandRejected": ("account", "escrow", "notification", "payment", "saga"),
}

# CommandRejected has no fixed topic: a service that refuses a command says so on its own events topic.
REJECTIONS: dict[str, Topic] = {
    "saga": ORDER_EVENTS,
    "account": ACCOUNT_EVENTS,
    "payment": PAYMENT_EVENTS,
    "escrow": ESCROW_EVENTS,
    "notification": NOTIFICATION_EVENTS,
}

# Whose consent a command needs (X9): the marketplace acts for the person it authenticated,
# named in the envelope's ``actor``; the actor must have this role and be the party the payload
# names in this field. The marketplace's signature vouches for the actor; where SPEC A6 asks for
# a security check (a PIN or one-time code above the threshold) the payload carries it too and the
# account service verifies it. Refunds (the seller's or the marketplace's to give) and the
# operators' decisions keep their own rules.
CONSENT: dict[str, tuple[ActorRole, str]] = {
    "Checkout": (ActorRole.BUYER, "buyer_id"),
    "PayAgain": (ActorRole.BUYER, "buyer_id"),
    "ConfirmReceipt": (ActorRole.BUYER, "buyer_id"),
    "ExtendProtection": (ActorRole.BUYER, "buyer_id"),
    "OpenDispute": (ActorRole.BUYER, "buyer_id"),
    "AnswerDispute": (ActorRole.SELLER, "seller_id"),
}


def party_actor(message: Message, session_id: str | None = None) -> Actor | None:
    """The actor a marketplace names when it sends ``message`` for the party the payload names
    (after authenticating that person); None for a command that needs no one's consent."""
    needed = CONSENT.get(message.message_type)
    if needed is None:
        return None
    role, field = needed
    return Actor(account_id=getattr(message, field), role=role, session_id=session_id)


# Who reads each topic (by topic name).
CONSUMERS: dict[str, tuple[str, ...]] = {
    "tradeguard.order.commands": ("saga",),
    "tradeguard.order.events": ("marketplace", "notification"),
    "tradeguard.account.commands": ("account",),
    "tradeguard.account.events": ("marketplace", "notification", "payment"),
    "tradeguard.payment.commands": ("payment",),
    "tradeguard.payment.events": ("notification", "saga"),
    "tradeguard.escrow.commands": ("escrow",),
    "tradeguard.escrow.events": ("notification", "saga"),
    "tradeguard.notification.commands": ("notification",),
    "tradeguard.notification.events": ("marketplace",),
    "tradeguard.dead-letter": (),  # for people: inspect, fix, replay
}

# Every service that consumes records dead-letters the ones it cannot process.
DEAD_LETTER_PRODUCERS: tuple[str, ...] = ("account", "escrow", "notification", "payment", "saga")

DEAD_LETTER_HEADERS: dict[str, str] = {
    DEAD_LETTER_REASON: "Why the record could not be processed.",
    DEAD_LETTER_CLASS: "record (it could not be read) or bug (its handler kept failing).",
    DEAD_LETTER_SOURCE: "Where it was read: topic/partition/offset.",
    DEAD_LETTER_CONSUMER: "The consumer that gave up on it.",
    DEAD_LETTER_AT: "When, ISO 8601 in UTC.",
}


# --- what is where ---------------------------------------------------------------------------


def schema_name(message: type[Message]) -> str:
    """``Checkout.v1``: the file stem and component name of a message's schema."""
    return f"{message.message_type}.v{message.version}"


def topics_of(message: type[Message]) -> tuple[Topic, ...]:
    """The topics a message type is published on."""
    if message is CommandRejected:
        return tuple(t for t in ALL_TOPICS if t in REJECTIONS.values())
    return (message.topic,)


def messages_on(topic: Topic) -> tuple[type[Message], ...]:
    return tuple(m for m in MESSAGE_TYPES if topic in topics_of(m))


def producers_of(topic: Topic) -> tuple[str, ...]:
    if topic == DEAD_LETTER:
        return DEAD_LETTER_PRODUCERS
    names: set[str] = set()
    for message in messages_on(topic):
        if message is CommandRejected:
            names.update(service for service, t in REJECTIONS.items() if t == topic)
        else:
            names.update(PRODUCERS[message.message_type])
    return tuple(sorted(names))


def consumers_of(topic: Topic) -> tuple[str, ...]:
    return tuple(sorted(CONSUMERS[topic.name]))


OPERATOR = "operator"
"""The operators' tools: they read every topic and may re-drive a dead letter to any topic
(the record keeps its producer's signature, so writing is not being believed)."""


def writers_of(topic: Topic) -> tuple[str, ...]:
    """The principals the broker lets write ``topic`` (its ACLs, issue 18)."""
    return tuple(sorted({*producers_of(topic), OPERATOR}))


def readers_of(topic: Topic) -> tuple[str, ...]:
    """The principals the broker lets read ``topic``."""
    return tuple(sorted({*consumers_of(topic), OPERATOR}))


def broker_principals() -> tuple[str, ...]:
    """Every principal that connects to the broker (besides the set-up's super user)."""
    return tuple(sorted({name for topic in ALL_TOPICS for name in (*writers_of(topic), *readers_of(topic))}))


def key_field(message: type[Message]) -> str:
    """The payload field whose value is the record key."""
    return "subject_id" if message is CommandRejected else message.topic.key.value


# --- JSON Schema -----------------------------------------------------------------------------


def pin_envelope(schema: JsonDict, message: type[Message]) -> JsonDict:
    """Title the envelope schema after its payload and fix the envelope's type and version."""
    properties = schema["properties"]
    for field, value in (("type", message.message_type), ("version", message.version)):
        pinned = {k: v for k, v in properties[field].items() if k != "examples"}
        properties[field] = pinned | {"const": value}
    schema["title"] = schema_name(message)
    return schema


def message_schema(message: type[Message]) -> JsonDict:
    """The standalone JSON Schema of one message as it travels: the envelope around its payload."""
    schema = pin_envelope(Envelope[message].model_json_schema(), message)  # type: ignore[valid-type]
    return {"$schema": "https://json-schema.org/draft/2020-12/schema"} | schema


def message_schemas() -> dict[str, JsonDict]:
    return {schema_name(m): message_schema(m) for m in MESSAGE_TYPES}


# --- topic table -----------------------------------------------------------------------------


def topics_markdown() -> str:
    """A markdown table of the topics: topic | partitions | key | messages | producers | consumers."""
    lines = [
        "# Topic catalogue",
        "",
        "Generated from `contracts/` by `scripts/export_contracts.py`; do not edit by hand.",
        "",
        "| Topic | Partitions | Key | Messages | Producers | Consumers |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for topic in ALL_TOPICS:
        if topic == DEAD_LETTER:
            messages = "original record bytes; headers " + ", ".join(f"`{h}`" for h in DEAD_LETTER_HEADERS)
        else:
            messages = ", ".join(schema_name(m) for m in messages_on(topic))
        cells = [
            f"`{topic.name}`",
            str(topic.partitions),
            topic.key.value,
            messages,
            ", ".join(producers_of(topic)) or "-",
            ", ".join(consumers_of(topic)) or "- (operators)",
        ]
        lines.append(f"| {' | '.join(cells)} |")
    lines += [
        "",
        (
            "CommandRejected is published on the events topic of the service that refused the command, "
            "keyed by its subject_id. JSON messages carry their type in the `tg-type` header."
        ),
        *_acl_markdown(),
    ]
    return "\n".join(lines) + "\n"


def _acl_markdown() -> list[str]:
    lines = [
        "",
        "## Broker ACLs",
        "",
        (
            "The broker authenticates every client (SASL/SCRAM-SHA-512) and allows each principal only this "
            "(`shared/broker_security.py` applies it; its super user `admin` is the set-up's alone). A principal "
            "may join only consumer groups whose names start with its own."
        ),
        "",
        "| Principal | Writes | Reads |",
        "| --- | --- | --- |",
    ]
    for principal in broker_principals():
        writes = [f"`{t.name}`" for t in ALL_TOPICS if principal in writers_of(t)]
        reads = [f"`{t.name}`" for t in ALL_TOPICS if principal in readers_of(t)]
        lines.append(f"| {principal} | {', '.join(writes) or '-'} | {', '.join(reads) or '-'} |")
    return lines


# --- files -----------------------------------------------------------------------------------


def render_json(document: Any) -> str:
    """Pretty-printed, sorted keys, trailing newline: stable bytes for stable files."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def rendered_files() -> dict[str, str]:
    """Every generated file, by path relative to the ``contracts`` directory."""
    from contracts.asyncapi import asyncapi  # it renders from this module's tables: imported when used

    files = {f"schemas/{name}.json": render_json(schema) for name, schema in message_schemas().items()}
    files["asyncapi.json"] = render_json(asyncapi())
    files["TOPICS.md"] = topics_markdown()
    return dict(sorted(files.items()))
