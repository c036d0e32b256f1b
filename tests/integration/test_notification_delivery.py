"""N1 and N2 against a real SMTP server (aiosmtpd, started by the test) and real databases: the
notification service's handlers (the batch consumer) and its email worker, with the worker's
``RecordEmailOutcome`` commands looped straight back into the consumer instead of over Kafka;
and once the whole service in-process over the real broker (a notice read before its
recipient's registration, issue 11).

No SMTP mock: every email goes over a TCP connection to aiosmtpd, which is stopped and started
to take the server down mid-run. Time is a ManualClock, so a retry's backoff is passed by
moving it, not by sleeping.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts import (
    AccountRegistered,
    AccountStatus,
    AccountStatusChanged,
    CardBrand,
    DisputeOpened,
    DisputeReason,
    DisputeResolution,
    DisputeResolved,
    FundingSource,
    FundingType,
    FundsHeld,
    Limits,
    MarkNotificationsRead,
    Message,
    Money,
    NotificationEmailed,
    NotificationUndeliverable,
    OrderStatus,
    OrderStatusChanged,
    PaymentAuthorized,
    PaymentCaptured,
    PaymentFailed,
    RedriveNotification,
    SetNotificationPreferences,
    WalletFunded,
    decode_message,
)
from contracts.money import Balance
from contracts.topics import ACCOUNT_EVENTS, DEAD_LETTER, DEAD_LETTER_CLASS, DEAD_LETTER_REASON, MESSAGE_TYPE_HEADER
from scripts.stack import free_port
from services.notification.app import DEFINITION, create_service
from services.notification.domain.delivery import DeliveryState, RetryPolicy, message_id_for
from services.notification.domain.rendering import TEMPLATES, Renderer
from services.notification.domain.rules import NoticeKind, notification_id
from services.notification.mail import SmtpMailer
from services.notification.ports import NotificationPorts
from services.notification.read_api import inbox, undelivered
from services.notification.settings import NotificationSettings
from services.notification.store import email_deliveries, notifications
from services.notification.worker import EmailWorker
from shared.broker_security import ADMIN, client_options
from shared.clock import ManualClock
from shared.consumer import BatchConsumer, outgoing
from shared.db import migrate
from shared.outbox import StoredRecord
from shared.settings import KafkaSettings
from tests.support.eventually import eventually
from tests.support.records import Record, record_of

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
POLICY = RetryPolicy(first=timedelta(seconds=1), cap=timedelta(seconds=8), attempts=5)
CARD_NUMBER = "4242424242424242"
TOKEN = "tok_9f8e7d6c5b4a"  # a vault token: must never reach a message


# ---------------------------------------------------------------------- a real SMTP server


@dataclass
class Inbox:
    """What the SMTP server accepted, in order."""

    received: list[EmailMessage] = field(default_factory=list)

    async def handle_DATA(self, _server: SMTP, _session: Session, envelope: Envelope) -> str:  # noqa: N802 - aiosmtpd's hook name
        content = envelope.original_content or b""
        mail = message_from_bytes(content, policy=policy.default)
        assert isinstance(mail, EmailMessage)
        self.received.append(mail)
        return "250 Message accepted for delivery"

    def by_message_id(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for mail in self.received:
            counts[str(mail["Message-ID"])] = counts.get(str(mail["Message-ID"]), 0) + 1
        return counts


class SmtpServer:
    """aiosmtpd on a fixed port, which the test can stop (the server is down) and start again."""

    def __init__(self) -> None:
        self.port = free_port()
        self.inbox = Inbox()
        self._controller: Controller | None = None

    def start(self) -> None:
        self._controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


# ---------------------------------------------------------------------- the service, looped back


class Loopback:
    """Stands in for the Kafka producer: what the worker publishes is fed back to the consumer."""

    def __init__(self) -> None:
        self.records: list[Record] = []

    async def send_and_wait(self, topic: str, value: bytes, key: bytes | None = None, headers: Any = None) -> None:
        self.records.append(Record(topic=topic, value=value, key=key, headers=tuple(headers or ())))


@dataclass
class Harness:
    engine: AsyncEngine
    smtp: SmtpServer
    clock: ManualClock
    ports: NotificationPorts
    consumer: BatchConsumer
    loopback: Loopback
    published: list[StoredRecord]

    def worker(self) -> EmailWorker:
        return EmailWorker(self.engine, self.loopback, self.ports, self.clock)

    async def feed(self, *messages: Message | Record) -> None:
        records = [m if isinstance(m, Record) else record_of(m, occurred_at=self.clock.now()) for m in messages]
        await self.consumer.consume(records)

    async def settle(self, worker: EmailWorker | None = None, rounds: int = 20) -> None:
        """Send what is due, loop the answers back, move time past any backoff; until quiet."""
        worker = worker or self.worker()
        for _ in range(rounds):
            rows, _later = await worker._due()
            if rows:
                await worker._send(rows)
            answers, self.loopback.records = self.loopback.records, []
            if answers:
                await self.consumer.consume(answers)
            elif not rows and not await self.pending():
                return
            self.clock.advance(POLICY.cap)
        await asyncio.sleep(0)

    async def pending(self) -> int:
        async with self.engine.connect() as conn:
            query = sa.select(sa.func.count()).where(email_deliveries.c.state == DeliveryState.PENDING.value)
            return int((await conn.execute(query)).scalar_one())

    def events(self, kind: type[Message]) -> list[Any]:
        found = []
        for _id, record in self.published:
            if (
                record.topic != DEAD_LETTER.name
                and dict(record.headers).get(MESSAGE_TYPE_HEADER) == kind.message_type.encode()
            ):
                found.append(decode_message(record.value).payload)
        return found

    def dead_letters(self) -> list[dict[str, str]]:
        return [
            {k: v.decode() for k, v in record.headers}
            for _id, record in self.published
            if record.topic == DEAD_LETTER.name
        ]


async def harness_for(engine: AsyncEngine, smtp: SmtpServer, renderer: Renderer | None = None) -> Harness:
    await migrate(engine, DEFINITION.migrations)
    clock = ManualClock(NOW)
    mailer = SmtpMailer(host="127.0.0.1", port=smtp.port, sender="TradeGuard <n@tradeguard.test>", timeout=2.0)
    ports = NotificationPorts(mailer, renderer=renderer or Renderer(), policy=POLICY)
    published: list[StoredRecord] = []
    consumer = BatchConsumer(
        name="notification",
        engine=engine,
        handlers=DEFINITION.handlers,
        rejections_topic=DEFINITION.rejections_topic,
        hand_over=published.extend,
        clock=clock,
        dependencies=ports,
        attempts=1,
    )
    return Harness(engine, smtp, clock, ports, consumer, Loopback(), published)


@pytest.fixture
async def harness(engine: AsyncEngine, smtp: SmtpServer) -> Harness:
    return await harness_for(engine, smtp)


# ---------------------------------------------------------------------- facts


def fresh(role: str) -> str:
    return f"{role}-{uuid.uuid4().hex[:8]}"


def registered(
    account_id: str, *, language: str = "en", email: str | None = None, currency: str = "USD"
) -> AccountRegistered:
    limit = Money(amount_minor=100_000, currency=currency)
    return AccountRegistered(
        account_id=account_id,
        phone_masked="+44 **** ***123",
        full_name="Ana Li",
        country="JP" if currency == "JPY" else "US",
        currency=currency,
        language=language,
        limits=Limits(per_payment=limit, daily=limit, monthly=limit),
        security_check_above=limit,
        enhanced_verification_required=False,
        email=email or f"{account_id}@example.test",
    )


def authorized_by_card(buyer: str, order_id: str, amount: Money) -> PaymentAuthorized:
    card = FundingSource(source_id="card-1", type=FundingType.CARD, brand=CardBrand.VISA, last4="4242")
    return PaymentAuthorized(
        account_id=buyer,
        order_id=order_id,
        amount=amount,
        funding_type=FundingType.CARD,
        source=card,
        source_token=TOKEN,
        source_leg=amount,
    )


def failed(buyer: str, order_id: str, amount: Money, reason: str = "insufficient_funds") -> PaymentFailed:
    return PaymentFailed(
        order_id=order_id,
        buyer_id=buyer,
        amount=amount,
        reason=reason,
        detail=f"the card issuer declined the payment ({reason}); card {CARD_NUMBER}",  # must never be shown
        permanent=True,
    )


def funded(account_id: str, minor: int) -> WalletFunded:
    return WalletFunded(
        account_id=account_id,
        amount=Money(amount_minor=minor, currency="USD"),
        balance=Balance(amount_minor=minor, currency="USD"),
    )


def body_of(mail: EmailMessage, subtype: str) -> str:
    part = mail.get_body(preferencelist=(subtype,))
    assert part is not None
    content = part.get_content()
    assert isinstance(content, str)
    return content


def mails_to(harness: Harness, address: str) -> list[EmailMessage]:
    return [m for m in harness.smtp.inbox.received if str(m["To"]) == address]


# ---------------------------------------------------------------------- tests


async def test_n1_n2_payment_failure_mail_in_chinese_with_amounts_and_no_secrets(harness: Harness) -> None:
    buyer, order_id = fresh("buyer"), fresh("order")
    price = Money(amount_minor=5000, currency="JPY")
    await harness.feed(registered(buyer, language="zh-CN", currency="JPY"))
    await harness.feed(authorized_by_card(buyer, order_id, price), failed(buyer, order_id, price))
    await harness.settle()

    (mail,) = [m for m in mails_to(harness, f"{buyer}@example.test") if "付款失败" in str(m["Subject"])]
    assert str(mail["Subject"]) == f"订单 {order_id} 付款失败"
    assert str(mail["Content-Language"]) == "zh-CN"
    nid = notification_id(buyer, NoticeKind.PAYMENT_FAILED, order_id)
    assert str(mail["Message-ID"]) == message_id_for(str(nid))
    text, html = body_of(mail, "plain"), body_of(mail, "html")
    assert "JP¥5,000" in text
    assert "Visa •••• 4242" in text
    assert "余额不足" in text
    assert "下一步：" in text  # noqa: RUF001 - the Chinese full-width colon
    assert 'lang="zh-CN"' in html
    assert "JP¥5,000" in html
    raw = mail.as_string()
    for secret in (CARD_NUMBER, TOKEN, "tok_"):
        assert secret not in raw + text + html
    assert not re.search(r"\d{9,}", text)

    (emailed,) = [e for e in harness.events(NotificationEmailed) if e.kind == "payment_failed"]
    assert emailed.message_id == message_id_for(str(nid))
    status, body = await inbox(harness.engine, {"account_id": buyer})
    assert status == 200
    kinds = {n["kind"]: n for n in body["notifications"]}
    assert kinds["payment_failed"]["email"] == "sent"
    assert kinds["payment_failed"]["read"] is False

    await harness.feed(MarkNotificationsRead(account_id=buyer, notification_ids=[nid]))
    _status, after = await inbox(harness.engine, {"account_id": buyer, "unread": "true"})
    assert "payment_failed" not in {n["kind"] for n in after["notifications"]}


async def test_n2_duplicates_of_the_same_event_send_once(harness: Harness) -> None:
    buyer, order_id = fresh("buyer"), fresh("order")
    price = Money(amount_minor=12999, currency="USD")
    await harness.feed(registered(buyer))
    same = record_of(failed(buyer, order_id, price))
    await harness.feed(same, same)  # the same record twice in one batch
    await harness.feed(same)  # and again later (a redelivery after a rebalance)
    await harness.feed(failed(buyer, order_id, price))  # the same fact re-published with a new message id
    await harness.settle()
    await harness.feed(same)
    await harness.settle()

    mails = [m for m in mails_to(harness, f"{buyer}@example.test") if "failed" in str(m["Subject"])]
    assert len(mails) == 1
    assert "$129.99" in body_of(mails[0], "plain")


async def test_n2_smtp_down_mid_run_then_every_mail_arrives_exactly_once(harness: Harness) -> None:
    buyers = [fresh("buyer") for _ in range(8)]
    await harness.feed(*(registered(b) for b in buyers))
    await harness.settle()
    welcome = len(harness.smtp.inbox.received)
    assert welcome == 8

    await harness.feed(*(funded(b, 1000 + i) for i, b in enumerate(buyers[:3])))
    await harness.settle()
    harness.smtp.stop()  # the server goes down mid-run
    await harness.feed(*(funded(b, 2000 + i) for i, b in enumerate(buyers)))
    worker = harness.worker()
    for _ in range(3):  # a few attempts fail while it is down
        rows, _ = await worker._due()
        await worker._send(rows)
        await harness.consumer.consume(harness.loopback.records)
        harness.loopback.records = []
        harness.clock.advance(POLICY.cap)
    _status, body = await undelivered(harness.engine, {"state": "pending"})
    waiting = body["undelivered"]
    assert len(waiting) == 8
    assert all(w["attempts"] >= 1 and "Connect" in (w["last_error"] or "") for w in waiting)
    assert not harness.events(NotificationUndeliverable)

    harness.smtp.start()  # it comes back
    await harness.settle(worker)

    counts = harness.smtp.inbox.by_message_id()
    assert len(harness.smtp.inbox.received) == 8 + 3 + 8
    assert set(counts.values()) == {1}, "every notification exactly once"
    for i, buyer in enumerate(buyers):
        texts = [body_of(m, "plain") for m in mails_to(harness, f"{buyer}@example.test")]
        assert sum(f"${20 + i / 100:.2f}" in t for t in texts) == 1
    assert await harness.pending() == 0


async def test_n2_a_restart_between_send_and_record_does_not_send_again(harness: Harness) -> None:
    """The worker's send log: accepted, logged, then the process died before the outcome was recorded."""
    buyer = fresh("buyer")
    await harness.feed(registered(buyer))
    await harness.settle()
    await harness.feed(funded(buyer, 4200))
    first = harness.worker()
    rows, _ = await first._due()
    await first._send(rows)
    harness.loopback.records = []  # the outcome was lost with the process
    assert len(mails_to(harness, f"{buyer}@example.test")) == 2

    await harness.settle(harness.worker())  # a new process
    assert len(mails_to(harness, f"{buyer}@example.test")) == 2
    assert await harness.pending() == 0


async def test_n2_gives_up_after_the_attempts_with_the_reason_and_a_redrive_delivers(harness: Harness) -> None:
    buyer = fresh("buyer")
    await harness.feed(SetNotificationPreferences(account_id=buyer, marketing=False))
    await harness.feed(registered(buyer))
    harness.smtp.stop()
    await harness.feed(funded(buyer, 777))
    await harness.settle()

    (dead,) = harness.events(NotificationUndeliverable)
    assert dead.kind == "wallet_funded"
    assert dead.attempts == POLICY.attempts
    assert "unavailable after 5 attempts" in dead.reason
    _status, body = await undelivered(harness.engine, {"state": "dead"})
    (row,) = body["undelivered"]
    assert row["address"].startswith(buyer[:1] + "***@")

    harness.smtp.start()
    await harness.feed(RedriveNotification(account_id=buyer, notification_id=dead.notification_id, operator_id="op-1"))
    await harness.settle()
    (mail,) = mails_to(harness, f"{buyer}@example.test")
    assert "$7.77" in body_of(mail, "plain")


async def test_n2_opted_out_still_gets_security_mail(harness: Harness) -> None:
    buyer = fresh("buyer")
    await harness.feed(SetNotificationPreferences(account_id=buyer, email=False, marketing=False))
    await harness.feed(registered(buyer))  # the welcome is marketing-like: not sent at all
    await harness.feed(funded(buyer, 500))  # transactional: the inbox only
    locked = AccountStatusChanged(
        account_id=buyer,
        status=AccountStatus.LOCKED,
        previous_status=AccountStatus.ACTIVE,
        reason="5 failed security checks in 15 minutes",
        changed_by="system",
    )
    await harness.feed(locked)
    await harness.settle()

    mails = mails_to(harness, f"{buyer}@example.test")
    assert [str(m["Subject"]) for m in mails] == ["Your account is locked"]
    assert "always sent" in body_of(mails[0], "plain")
    _status, body = await inbox(harness.engine, {"account_id": buyer})
    by_kind = {n["kind"]: n for n in body["notifications"]}
    assert set(by_kind) == {"wallet_funded", "account_locked"}
    assert by_kind["wallet_funded"]["email"].startswith("not sent")


async def test_stale_reminder_for_a_completed_order_is_not_sent(harness: Harness) -> None:
    buyer, seller = fresh("buyer"), fresh("seller")
    await harness.feed(registered(buyer), registered(seller))
    await harness.settle()
    price = Money(amount_minor=2500, currency="USD")

    def status(order_id: str, to: OrderStatus) -> OrderStatusChanged:
        return OrderStatusChanged(order_id=order_id, buyer_id=buyer, seller_id=seller, amount=price, status=to)

    late = fresh("order")  # the completion is read before the escrow's FundsHeld (another topic)
    await harness.feed(status(late, OrderStatus.COMPLETED))
    await harness.feed(FundsHeld(order_id=late, buyer_id=buyer, seller_id=seller, amount=price))
    queued = fresh("order")  # the reminder is queued, the order completes before the worker sends it
    await harness.feed(FundsHeld(order_id=queued, buyer_id=buyer, seller_id=seller, amount=price))
    await harness.feed(status(queued, OrderStatus.COMPLETED))
    await harness.settle()

    subjects = [str(m["Subject"]) for m in harness.smtp.inbox.received]
    assert not [s for s in subjects if "escrow" in s or "ship it" in s]
    assert sum("is complete" in s for s in subjects) == 2
    async with harness.engine.connect() as conn:
        states = (
            (await conn.execute(sa.select(email_deliveries.c.state).where(email_deliveries.c.order_id == queued)))
            .scalars()
            .all()
        )
    assert sorted(states) == ["sent", "suppressed", "suppressed"]


async def test_n1_a_template_error_or_unknown_event_is_dead_lettered_and_the_service_keeps_going(
    engine: AsyncEngine, smtp: SmtpServer, tmp_path: Path
) -> None:
    broken = tmp_path / "templates"
    shutil.copytree(TEMPLATES, broken)
    (broken / "en" / "payment_failed.txt").write_text(
        "{% extends layout %}{% block subject %}{{ event.no_such_field }}{% endblock %}"
    )
    harness = await harness_for(engine, smtp, Renderer(broken))
    buyer, order_id = fresh("buyer"), fresh("order")
    await harness.feed(registered(buyer))
    unknown = Record(
        topic=ACCOUNT_EVENTS.name,
        key=buyer.encode(),
        value=b'{"type": "AccountTeleported", "version": 1}',
        headers=((MESSAGE_TYPE_HEADER, b"AccountTeleported"),),
    )
    price = Money(amount_minor=100, currency="USD")
    await harness.feed(failed(buyer, order_id, price), unknown, funded(buyer, 900))
    await harness.settle()

    letters = harness.dead_letters()
    assert len(letters) == 2
    bug = next(d for d in letters if d[DEAD_LETTER_CLASS] == "bug")
    assert "UndefinedError" in bug[DEAD_LETTER_REASON]
    assert "no_such_field" in bug[DEAD_LETTER_REASON]
    record = next(d for d in letters if d[DEAD_LETTER_CLASS] == "record")
    assert "AccountTeleported" in record[DEAD_LETTER_REASON]
    subjects = [str(m["Subject"]) for m in mails_to(harness, f"{buyer}@example.test")]
    assert "$9.00 added to your wallet" in subjects  # the next event went through
    async with engine.connect() as conn:
        kinds = (
            (await conn.execute(sa.select(notifications.c.kind).where(notifications.c.recipient_id == buyer)))
            .scalars()
            .all()
        )
    assert "payment_failed" not in kinds


# ---------------------------------------------------------------------- issue 11: before the registration


def registration(account_id: str, **profile: Any) -> Record:
    """The account's registration, with the idempotency key a re-publish of it would keep."""
    return record_of(registered(account_id, **profile), idempotency_key=f"registered-{account_id}")


async def inbox_of(harness: Harness, account_id: str) -> dict[str, dict[str, Any]]:
    status, body = await inbox(harness.engine, {"account_id": account_id})
    assert status == 200
    return {n["kind"]: n for n in body["notifications"]}


async def test_n1_n2_a_notice_read_before_the_registration_is_mailed_in_the_profiles_language(
    harness: Harness,
) -> None:
    buyer, order_id = fresh("buyer"), fresh("order")
    address = f"{buyer}@example.test"
    price = Money(amount_minor=5000, currency="JPY")
    # The payment's failure is read before the account's registration (another topic).
    await harness.feed(authorized_by_card(buyer, order_id, price), failed(buyer, order_id, price))
    await harness.settle()
    assert not mails_to(harness, address)
    held = (await inbox_of(harness, buyer))["payment_failed"]
    assert held["language"] == "en"  # the inbox has it at once, in English until the profile says otherwise
    assert held["email"] == "held until the account's details arrive"

    await harness.feed(registration(buyer, language="zh-CN", currency="JPY"))
    await harness.settle()

    (mail,) = [m for m in mails_to(harness, address) if "付款失败" in str(m["Subject"])]
    assert str(mail["Subject"]) == f"订单 {order_id} 付款失败"
    assert str(mail["Content-Language"]) == "zh-CN"
    nid = notification_id(buyer, NoticeKind.PAYMENT_FAILED, order_id)
    assert str(mail["Message-ID"]) == message_id_for(str(nid))
    text, html = body_of(mail, "plain"), body_of(mail, "html")
    assert text.startswith("Ana Li，您好")  # noqa: RUF001 - the Chinese full-width comma
    for body in (text, html):
        assert "JP¥5,000" in body
        assert "Visa •••• 4242" in body  # the card read before the registration, kept with the notice
        assert "余额不足" in body
    for secret in (CARD_NUMBER, TOKEN, "tok_"):
        assert secret not in mail.as_string() + text + html
    released = (await inbox_of(harness, buyer))["payment_failed"]
    assert (released["language"], released["subject"], released["email"]) == (
        "zh-CN",
        f"订单 {order_id} 付款失败",
        "sent",
    )
    assert {str(m["Subject"]) for m in mails_to(harness, address)} == {
        f"订单 {order_id} 付款失败",
        "欢迎使用 TradeGuard",
    }

    # Exactly once: the failure again, the registration again and re-published, after the release.
    again = registration(buyer, language="zh-CN", currency="JPY")
    await harness.feed(failed(buyer, order_id, price), again, registration(buyer, language="zh-CN", currency="JPY"))
    await harness.settle()
    assert len(mails_to(harness, address)) == 2
    assert set(harness.smtp.inbox.by_message_id().values()) == {1}
    assert [e.kind for e in harness.events(NotificationEmailed)].count("payment_failed") == 1


async def test_n1_n2_a_notice_and_the_registration_in_one_batch(harness: Harness) -> None:
    buyer, order_id = fresh("buyer"), fresh("order")
    price = Money(amount_minor=12999, currency="USD")
    await harness.feed(failed(buyer, order_id, price), registration(buyer, language="zh-CN"))
    await harness.settle()
    subjects = [str(m["Subject"]) for m in mails_to(harness, f"{buyer}@example.test")]
    assert sorted(subjects) == sorted([f"订单 {order_id} 付款失败", "欢迎使用 TradeGuard"])


async def test_n2_held_notices_take_the_channels_the_profile_and_preferences_allow(harness: Harness) -> None:
    buyer = fresh("buyer")
    await harness.feed(SetNotificationPreferences(account_id=buyer, email=False))
    locked = AccountStatusChanged(
        account_id=buyer,
        status=AccountStatus.LOCKED,
        previous_status=AccountStatus.ACTIVE,
        reason="5 failed security checks in 15 minutes",
        changed_by="system",
    )
    await harness.feed(funded(buyer, 500), locked)  # before the registration: both held
    await harness.feed(registration(buyer))
    await harness.settle()

    mails = mails_to(harness, f"{buyer}@example.test")
    assert [str(m["Subject"]) for m in mails] == ["Your account is locked"]  # security goes whatever the settings
    by_kind = await inbox_of(harness, buyer)
    assert by_kind["wallet_funded"]["email"].startswith("not sent")
    assert by_kind["account_locked"]["email"] == "sent"
    assert by_kind["welcome"]["email"].startswith("not sent")


async def test_stale_held_reminder_is_not_sent_when_its_order_ended_before_the_registration(harness: Harness) -> None:
    buyer, seller, order_id = fresh("buyer"), fresh("seller"), fresh("order")
    price = Money(amount_minor=2500, currency="USD")
    await harness.feed(FundsHeld(order_id=order_id, buyer_id=buyer, seller_id=seller, amount=price))
    completed = OrderStatusChanged(
        order_id=order_id, buyer_id=buyer, seller_id=seller, amount=price, status=OrderStatus.COMPLETED
    )
    await harness.feed(completed)
    await harness.feed(registration(buyer), registration(seller))
    await harness.settle()

    subjects = [str(m["Subject"]) for m in harness.smtp.inbox.received]
    assert not [s for s in subjects if "escrow" in s or "ship it" in s]
    assert f"Order {order_id} is complete" in subjects
    async with harness.engine.connect() as conn:
        states = (
            await conn.execute(
                sa.select(email_deliveries.c.kind, email_deliveries.c.state).where(
                    email_deliveries.c.order_id == order_id
                )
            )
        ).all()
    assert sorted(states) == [("funds_held", "suppressed"), ("order_completed", "sent"), ("order_paid", "suppressed")]


async def test_n1_a_held_notice_with_a_broken_template_is_dead_lettered_at_once_and_the_registration_goes_through(
    engine: AsyncEngine, smtp: SmtpServer, tmp_path: Path
) -> None:
    broken = tmp_path / "templates"
    shutil.copytree(TEMPLATES, broken)
    (broken / "zh-CN" / "payment_failed.txt").write_text(  # not the inbox's English: checked all the same
        "{% extends layout %}{% block subject %}{{ event.no_such_field }}{% endblock %}"
    )
    harness = await harness_for(engine, smtp, Renderer(broken))
    buyer, order_id = fresh("buyer"), fresh("order")
    await harness.feed(failed(buyer, order_id, Money(amount_minor=100, currency="USD")))
    await harness.feed(registration(buyer, language="zh-CN"))
    await harness.settle()

    (letter,) = harness.dead_letters()
    assert letter[DEAD_LETTER_CLASS] == "bug"
    assert "UndefinedError" in letter[DEAD_LETTER_REASON]
    assert "no_such_field" in letter[DEAD_LETTER_REASON]
    assert set(await inbox_of(harness, buyer)) == {"welcome"}
    assert [str(m["Subject"]) for m in mails_to(harness, f"{buyer}@example.test")] == ["欢迎使用 TradeGuard"]


# ---------------------------------------------------------------------- N1: contracts 0.6.0


def captured(buyer: str, order_id: str, amount: Money, attempt: int = 1) -> PaymentCaptured:
    return PaymentCaptured(order_id=order_id, buyer_id=buyer, amount=amount, attempt=attempt)


async def test_n1_a_transient_failure_is_not_told_nor_a_failure_after_the_success(harness: Harness) -> None:
    buyer, order_id = fresh("buyer"), fresh("order")
    price = Money(amount_minor=4200, currency="USD")
    await harness.feed(SetNotificationPreferences(account_id=buyer, marketing=False), registration(buyer))
    transient = failed(buyer, order_id, price, "issuer_unavailable").model_copy(update={"permanent": False})
    await harness.feed(transient)  # the saga retries it: nothing to tell
    await harness.feed(captured(buyer, order_id, price, attempt=2))
    await harness.feed(failed(buyer, order_id, price))  # a late, contradicting answer of attempt 1
    await harness.settle()

    assert set(await inbox_of(harness, buyer)) == {"payment_succeeded"}
    assert [str(m["Subject"]) for m in mails_to(harness, f"{buyer}@example.test")] == [
        f"Payment for order {order_id} received"
    ]


async def test_n1_a_decline_then_paying_again_tells_each_in_order(harness: Harness) -> None:
    buyer, order_id = fresh("buyer"), fresh("order")
    price = Money(amount_minor=4200, currency="USD")
    await harness.feed(SetNotificationPreferences(account_id=buyer, marketing=False), registration(buyer))
    await harness.feed(failed(buyer, order_id, price))  # declined: the buyer pays again another way (S2)
    await harness.feed(failed(buyer, order_id, price).model_copy(update={"attempt": 2}))  # declined again
    await harness.feed(captured(buyer, order_id, price, attempt=3))
    await harness.settle()

    subjects = [str(m["Subject"]) for m in mails_to(harness, f"{buyer}@example.test")]
    assert subjects == [f"Payment for order {order_id} failed"] * 2 + [f"Payment for order {order_id} received"]


async def test_n1_a_dispute_reaches_both_parties_in_their_languages(harness: Harness) -> None:
    buyer, seller, order_id = fresh("buyer"), fresh("seller"), fresh("order")
    held = Money(amount_minor=5000, currency="JPY")
    await harness.feed(registration(buyer, currency="JPY"), registration(seller, language="zh-CN", currency="JPY"))
    await harness.settle()
    await harness.feed(
        DisputeOpened(
            order_id=order_id,
            dispute_id="d-1",
            buyer_id=buyer,
            seller_id=seller,
            amount=held,
            reason=DisputeReason.NOT_RECEIVED,
            answer_by=NOW + timedelta(days=3),
        ),
        DisputeResolved(
            order_id=order_id,
            dispute_id="d-1",
            buyer_id=buyer,
            seller_id=seller,
            resolution=DisputeResolution.REFUND_IN_FULL,
            refund=held,
            release=Money(amount_minor=0, currency="JPY"),
            decided_by="deadline",
            reason=f"the seller did not answer by {(NOW + timedelta(days=3)).isoformat()}",
        ),
    )
    await harness.settle()

    to_buyer = {str(m["Subject"]): body_of(m, "plain") for m in mails_to(harness, f"{buyer}@example.test")}
    to_seller = {str(m["Subject"]): body_of(m, "plain") for m in mails_to(harness, f"{seller}@example.test")}
    assert "Dec 4, 2026" in to_buyer[f"We received your dispute for order {order_id}"]
    assert "¥5,000 goes back to you" in to_buyer[f"Your dispute for order {order_id} is resolved"]
    assert "2026年12月4日" in to_seller[f"买家对订单 {order_id} 提起了争议"]
    assert "JP¥5,000 退还给买家" in to_seller[f"订单 {order_id} 的争议已有结果"]


async def test_n1_the_upgrade_knows_who_registered_and_which_orders_were_paid(engine: AsyncEngine) -> None:
    """notification_0004 on a database written by the version before: nothing held, nothing told again."""
    await migrate(engine, DEFINITION.migrations, to="notification_0003")
    recipient = {"email_enabled": True, "marketing_enabled": True, "version": 1, "updated_at": NOW, "email": None}
    order = {"card_brand": None, "card_last4": None, "version": 1, "updated_at": NOW}
    async with engine.begin() as conn:
        await conn.execute(
            sa.text(
                "INSERT INTO notification_recipients (account_id, language, full_name, email, email_enabled, "
                "marketing_enabled, version, updated_at) VALUES (:account_id, :language, :full_name, :email, "
                ":email_enabled, :marketing_enabled, :version, :updated_at)"
            ),
            [
                {"account_id": "registered", "language": "zh-CN", "full_name": "Ana Li", **recipient},
                {"account_id": "preferences-only", "language": "en", "full_name": None, **recipient},
            ],
        )
        await conn.execute(
            sa.text(
                "INSERT INTO notification_orders (order_id, status, card_brand, card_last4, version, updated_at) "
                "VALUES (:order_id, :status, :card_brand, :card_last4, :version, :updated_at)"
            ),
            [{"order_id": "paid", "status": "in_escrow", **order}, {"order_id": "unpaid", "status": None, **order}],
        )
    await migrate(engine, DEFINITION.migrations)

    async with engine.connect() as conn:
        profiles = (await conn.execute(sa.text("SELECT account_id, has_profile FROM notification_recipients"))).all()
        paid = (await conn.execute(sa.text("SELECT order_id, captured FROM notification_orders"))).all()
    assert {str(k): bool(v) for k, v in profiles} == {"registered": True, "preferences-only": False}
    assert {str(k): bool(v) for k, v in paid} == {"paid": True, "unpaid": False}


# ---------------------------------------------------------------------- over the broker


@pytest.fixture
async def notification_service(database_url: str, kafka_bootstrap: str, smtp: SmtpServer) -> AsyncIterator[AsyncEngine]:
    """The notification service in-process: its consumer on the real broker, its email worker on aiosmtpd."""
    settings = NotificationSettings(
        database_url=database_url,
        kafka=KafkaSettings(bootstrap_servers=kafka_bootstrap),
        smtp_host="127.0.0.1",
        smtp_port=smtp.port,
        smtp_timeout_seconds=2.0,
    )
    service = create_service(settings)
    await service.start()
    try:
        yield service.engine
    finally:
        await service.stop()


async def test_n1_n2_over_the_broker_a_failure_read_before_the_registration_is_mailed_in_its_language(
    notification_service: AsyncEngine, kafka_bootstrap: str, smtp: SmtpServer
) -> None:
    """The payment's events and the account's are on two topics: nothing orders one before the other."""
    buyer, order_id = fresh("buyer"), fresh("order")
    price = Money(amount_minor=5000, currency="JPY")
    producer = AIOKafkaProducer(
        **client_options(ADMIN), bootstrap_servers=kafka_bootstrap, enable_idempotence=True, acks="all"
    )
    await producer.start()

    async def publish(message: Message, source: str) -> None:
        record = outgoing(message, source=source, correlation_id=order_id, idempotency_key=f"{source}:{uuid.uuid4()}")
        await producer.send_and_wait(record.topic, record.value, key=record.key, headers=list(record.headers))

    async def kinds() -> dict[str, dict[str, Any]]:
        _status, body = await inbox(notification_service, {"account_id": buyer})
        return {n["kind"]: n for n in body["notifications"]}

    async def received() -> list[EmailMessage]:
        return [m for m in smtp.inbox.received if str(m["To"]) == f"{buyer}@example.test"]

    try:
        await publish(failed(buyer, order_id, price), "payment")
        held = await eventually(kinds, lambda found: "payment_failed" in found)
        assert held["payment_failed"]["email"] == "held until the account's details arrive"
        await publish(registered(buyer, language="zh-CN", currency="JPY"), "account")
        mails = await eventually(received, lambda found: len(found) == 2)
    finally:
        await producer.stop()

    subjects = {str(m["Subject"]): m for m in mails}
    assert set(subjects) == {f"订单 {order_id} 付款失败", "欢迎使用 TradeGuard"}
    mail = subjects[f"订单 {order_id} 付款失败"]
    assert str(mail["Content-Language"]) == "zh-CN"
    assert "JP¥5,000" in body_of(mail, "plain")
    assert "余额不足" in body_of(mail, "html")
    sent = await eventually(kinds, lambda found: found["payment_failed"]["email"] == "sent")
    assert sent["payment_failed"]["language"] == "zh-CN"
