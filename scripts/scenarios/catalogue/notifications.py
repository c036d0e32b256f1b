"""Notifications (N1, N2): mail in the holder's language, mail through an outage, and security
mail that no preference silences.

Every email is read where its user reads it: the stack's local mail server stores what it
accepts in a Maildir (``world.mailbox``), and each one is found there by the Message-ID that
``NotificationEmailed`` names once the server has accepted it. The in-app copy of a notice is read
from the notification service's inbox (``GET /notifications`` at ``world.endpoint("notification")``).
A notification's id is derived from its recipient, kind and reference, so a scenario can name the
notices it expects before they exist.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from email.message import EmailMessage
from typing import Any, TypeVar

import httpx

from contracts import (
    AccountStatus,
    AccountStatusChanged,
    EmailOutcome,
    MarkNotificationsRead,
    Money,
    NotificationEmailed,
    RecordEmailOutcome,
    SetNotificationPreferences,
    SuspiciousActivity,
    SuspiciousActivityDetected,
)
from scripts.onboarding import Person
from scripts.scenarios.catalogue.security import fail_checks_until_locked
from scripts.scenarios.outcome import ScenarioFailed, expect
from scripts.scenarios.registry import scenario
from scripts.scenarios.steps import add_card, checkout, expect_declined, expect_in_escrow, top_up, usd
from scripts.scenarios.world import World
from services.notification.domain.rules import NoticeKind, notification_id

T = TypeVar("T")
APPROVING_CARD = "4242424242424242"  # the simulator's approving Visa (services/funding/data/test_cards.toml)
POLL_SECONDS = 0.1
"""How often a state no event announces (the inbox's read marks) is looked at again."""


def hkd(minor: int) -> Money:
    return Money(amount_minor=minor, currency="HKD")


# ---------------------------------------------------------------------- reading mail


def text_of(mail: EmailMessage) -> str:
    """The plain-text alternative, decoded."""
    part = mail.get_body(preferencelist=("plain",))
    return str(part.get_content()) if isinstance(part, EmailMessage) else ""


def html_of(mail: EmailMessage) -> str:
    part = mail.get_body(preferencelist=("html",))
    return str(part.get_content()) if isinstance(part, EmailMessage) else ""


def arrived(world: World, emailed: NotificationEmailed, person: Person) -> EmailMessage:
    """The email ``emailed`` reports, as it lies in the person's mailbox."""
    mail = world.mailbox.find(emailed.message_id)
    expect(mail is not None, f"the {emailed.kind} email {emailed.message_id} in the Maildir", got="no such file")
    assert mail is not None
    expect(str(mail["To"]) == person.email, f"the {emailed.kind} email addressed to {person.email}", got=mail["To"])
    world.say(f"{person.email} receives “{mail['Subject']}” ({mail['Content-Language']})")
    return mail


def secrets_of(person: Person, *tokens: str) -> dict[str, str]:
    """What must never appear in a notification, named for the failure message."""
    return {
        "the card number": APPROVING_CARD,
        "the card number, grouped": " ".join(APPROVING_CARD[i : i + 4] for i in range(0, 16, 4)),
        "the password": person.password,
        "the payment PIN": person.pin,
        "the document number": person.document_number,
        **{f"the vault token {token[:6]}…": token for token in tokens},
    }


# ---------------------------------------------------------------------- the in-app inbox


async def inbox(world: World, account_id: str) -> list[dict[str, Any]]:
    """The holder's in-app notices, newest first, as the app lists them."""
    async with httpx.AsyncClient(base_url=world.endpoint("notification"), timeout=5.0) as client:
        answer = await client.get("/notifications", params={"account_id": account_id, "per_page": "100"})
    expect(answer.status_code == 200, "the inbox to answer 200", got=f"{answer.status_code}: {answer.text[:200]}")
    notices: list[dict[str, Any]] = answer.json()["notifications"]
    return notices


async def until(world: World, probe: Callable[[], Awaitable[T | None]], what: str) -> T:
    """What ``probe`` finds, looking again until it finds something (for a state that no event
    announces); :class:`ScenarioFailed` saying ``what`` if nothing comes within the world's timeout."""
    deadline = time.monotonic() + world.timeout
    while (found := await probe()) is None:
        if time.monotonic() > deadline:
            raise ScenarioFailed(f"timed out after {world.timeout:.0f} s waiting for {what}")
        await asyncio.sleep(POLL_SECONDS)
    return found


async def notice_of(world: World, account_id: str, kind: NoticeKind, *, read: bool | None = None) -> dict[str, Any]:
    """The holder's first notice of ``kind`` in the inbox (once it is there, and read or not as asked)."""

    async def look() -> dict[str, Any] | None:
        mine = await inbox(world, account_id)
        return next((n for n in mine if n["kind"] == kind.value and read in (None, n["read"])), None)

    state = "" if read is None else (" read" if read else " unread")
    return await until(world, look, f"a{state} {kind.value} notice in {account_id}'s inbox")


# ---------------------------------------------------------------------- the scenarios

PRICE = hkd(125_000)
PRICE_IN_CHINESE = "HK$1,250.00"
"""1,250.00 HKD as the zh-CN locale writes it (babel, CLDR): never ``1250.00 HKD`` or minor units."""
REASON_IN_CHINESE = "余额不足"  # "the balance is not enough"
NEXT_STEP_IN_CHINESE = "请为钱包充值"  # "please top up the wallet"
PAYMENT_FAILED_IN_CHINESE = "付款失败"  # "payment failed", the subject's words


@scenario(
    "mail-on-payment-failure-zh-CN",
    "A buyer who reads Chinese pays more than the wallet holds: the failure mail arrives in Chinese with the "
    "reason, the next step and the amount in HK$, and no secret",
    features=("N1", "N2", "P4", "A1"),
)
async def mail_on_payment_failure_zh_cn(world: World) -> None:
    """李华, a buyer in Hong Kong who chose Chinese (zh-CN) and gave an email address at
    registration, sets a payment PIN, adds a card by token and tops the wallet up with 100.00
    HKD; the marketplace checks out 1,250.00 HKD from the wallet. The payment fails
    (insufficient_funds). The payment-failed email reaches the
    buyer's mailbox in Chinese (Content-Language zh-CN, a Chinese subject naming the order):
    it greets the buyer by name, says in plain words that the balance was not enough, says what
    to do next (top up the wallet or use another card), and writes the amount the way the
    locale does (HK$1,250.00). No email the buyer received carries the card number, the vault
    token, the PIN, the password or the document number."""
    buyer = world.person("buyer", country="HK", full_name="李华", language="zh-CN", with_email=True)
    world.say(f"{buyer.account_id} ({buyer.full_name}, zh-CN, {buyer.email}) registers, verifies and binds the wallet")
    await world.onboarding.buyer(buyer)
    # No waiting for the notification service to read the registration first: a notice for a
    # buyer whose profile it has not read yet is held and mailed in their language once it has.
    await world.onboarding.set_pin(buyer)
    _source_id, token = await add_card(world, buyer, APPROVING_CARD)
    await top_up(world, buyer.account_id, hkd(10_000))
    order_id = await checkout(world, buyer, world.fresh("seller"), PRICE, item="蓝牙音箱")
    await expect_declined(world, order_id, "insufficient_funds")

    emailed = await world.event(NotificationEmailed, account_id=buyer.account_id, kind=NoticeKind.PAYMENT_FAILED.value)
    mail = arrived(world, emailed, buyer)
    subject, text, html = str(mail["Subject"]), text_of(mail), html_of(mail)
    expect(str(mail["Content-Language"]) == "zh-CN", "the email in zh-CN", got=mail["Content-Language"])
    expect(
        PAYMENT_FAILED_IN_CHINESE in subject and order_id in subject,
        f"a Chinese subject naming {order_id}",
        got=subject,
    )
    for body, form in ((text, "plain text"), (html, "HTML")):
        expect(buyer.full_name in body, f"the {form} to greet {buyer.full_name}", got=body)
        expect(REASON_IN_CHINESE in body, f"the {form} to give the reason in plain Chinese words", got=body)
        expect(NEXT_STEP_IN_CHINESE in body, f"the {form} to say the next step (top up)", got=body)
        expect(PRICE_IN_CHINESE in body, f"the {form} to write the amount as {PRICE_IN_CHINESE}", got=body)
        expect("insufficient_funds" not in body, f"the {form} to explain the reason, not show its code", got=body)
    expect("not enough money" not in text, "no English advice in a Chinese email", got=text)
    world.say(f"it reads: {' '.join(text.split())[:160]}")

    # The card's and the PIN's own (security) emails are the likeliest to leak: wait for them too.
    for kind in (NoticeKind.FUNDING_SOURCE_ADDED, NoticeKind.PAYMENT_PIN_SET):
        await world.event(NotificationEmailed, account_id=buyer.account_id, kind=kind.value)
    assert buyer.email is not None
    received = world.mailbox.to(buyer.email)
    for what, secret in secrets_of(buyer, token).items():
        leaked = [str(m["Subject"]) for m in received if secret in m.as_string() + text_of(m) + html_of(m)]
        expect(not leaked, f"{what} in none of the buyer's {len(received)} emails", got=leaked)
    world.say(f"none of the {len(received)} emails to {buyer.email} carries a card number, token, PIN or password")


@scenario(
    "smtp-down-then-recovers",
    "The mail server goes down while an order is paid: its emails are retried, not lost, and arrive exactly "
    "once when the server is back",
    features=("N2", "S1", "X2"),
)
async def smtp_down_then_recovers(world: World) -> None:
    """A bound buyer with an email address tops the wallet up. The mail server goes down (its
    DOWN file) and the marketplace checks out a 42.50 USD order, which is paid into escrow. The
    order's two emails to the buyer (payment succeeded, funds held) cannot be delivered: each
    attempt is answered `unavailable`, each is retried after a backoff (a second attempt), no
    NotificationEmailed comes, none is in the Maildir, and the operator's view lists both as
    pending with the error. The mail server comes back: both arrive, each exactly once (one
    copy of its Message-ID in the Maildir, one NotificationEmailed), after more than one attempt."""
    buyer = world.person("buyer", with_email=True)
    world.say(f"{buyer.account_id} ({buyer.email}) registers, verifies and binds the wallet")
    await world.onboarding.buyer(buyer)
    await top_up(world, buyer.account_id, usd(10_000))
    mailbox = world.mailbox
    order_id = world.fresh("order")
    expected = {
        kind: uuid.UUID(str(notification_id(buyer.account_id, kind, order_id)))
        for kind in (NoticeKind.PAYMENT_SUCCEEDED, NoticeKind.FUNDS_HELD)
    }

    world.say("the mail server goes down")
    await mailbox.take_down()
    try:
        await checkout(world, buyer, world.fresh("seller"), usd(4250), item="Bluetooth speaker", order_id=order_id)
        await expect_in_escrow(world, order_id)
        for kind, nid in expected.items():
            # The worker's backoff waits in real time (seconds); each answer is awaited, not slept for.
            for attempt in (1, 2):
                failed = await world.event(
                    RecordEmailOutcome, notification_id=nid, attempt=attempt, outcome=EmailOutcome.UNAVAILABLE
                )
                world.say(f"the {kind.value} email, attempt {attempt}: {failed.outcome.value} ({failed.detail[:60]})")
        expect(
            not [e for e in world.seen(NotificationEmailed) if e.notification_id in expected.values()],
            "no NotificationEmailed for the order while the server is down",
        )
        early = _arrived(world, expected)
        expect(not early, "none of the order's emails in the Maildir while the server is down", got=early)
        await _listed_undelivered(world, expected)
    finally:
        world.say("the mail server comes back")
        await mailbox.bring_up()

    emailed = {kind: await world.event(NotificationEmailed, notification_id=nid) for kind, nid in expected.items()}
    assert buyer.email is not None
    copies = mailbox.copies(buyer.email)
    for kind, event in emailed.items():
        expect(event.attempts > 1, f"the {kind.value} email delivered after a retry", got=f"{event.attempts} attempt")
        expect(
            copies[event.message_id] == 1,
            f"one copy of {event.message_id} in the Maildir",
            got=copies[event.message_id],
        )
        told = world.seen(NotificationEmailed, notification_id=event.notification_id)
        expect(len(told) == 1, f"one NotificationEmailed for the {kind.value} email", got=len(told))
        arrived(world, event, buyer)
    world.say(
        f"both emails of {order_id} arrived once each, after {', '.join(str(e.attempts) for e in emailed.values())} attempts"
    )


def _arrived(world: World, expected: dict[NoticeKind, uuid.UUID]) -> list[str]:
    """The expected notifications' emails already in the Maildir (their Message-IDs name them)."""
    ids = {str(nid) for nid in expected.values()}
    return [
        str(m["Message-ID"]) for m in world.mailbox.messages() if str(m["Message-ID"]).strip("<").split("@")[0] in ids
    ]


async def _listed_undelivered(world: World, expected: dict[NoticeKind, uuid.UUID]) -> None:
    """The operator's view (``tradeguard notifications undelivered``) lists each as pending, with the error."""
    async with httpx.AsyncClient(base_url=world.endpoint("notification"), timeout=5.0) as client:
        answer = await client.get("/notifications/undelivered", params={"state": "pending"})
    listed = {row["notification_id"]: row for row in answer.json()["undelivered"]}
    for kind, nid in expected.items():
        row = listed.get(str(nid))
        expect(row is not None and bool(row["last_error"]), f"the {kind.value} email listed as undelivered", got=row)
        assert row is not None
        world.say(
            f"undelivered: {row['kind']} to {row['address']}, {row['attempts']} attempt(s), {row['last_error'][:60]}"
        )


SECURITY_FOOTER = "This is a security message. It is always sent, whatever your notification settings."


@scenario(
    "opted-out-still-gets-security-mail",
    "A buyer turns email off: a top-up is told in the inbox only, but the lock after 5 wrong passwords still "
    "comes by email",
    features=("N2", "N1", "A6"),
)
async def opted_out_still_gets_security_mail(world: World) -> None:
    """A bound buyer with an email address reads the welcome notice in the app and turns email
    off for everything but security (SetNotificationPreferences email=false). The wallet is
    topped up: that transactional notice is in the in-app inbox, but no email goes (the inbox
    says it was not sent, no NotificationEmailed, nothing in the Maildir). Then someone tries 5
    wrong passwords: the account is locked, and the lock and the suspicious-activity notices
    still arrive by email, because security messages cannot be opted out of."""
    buyer = world.person("buyer", with_email=True)
    world.say(f"{buyer.account_id} ({buyer.email}) registers, verifies and binds the wallet")
    await world.onboarding.buyer(buyer)
    account_id = buyer.account_id
    welcome = await notice_of(world, account_id, NoticeKind.WELCOME)

    world.say(f"{account_id} reads the welcome notice and turns email off (security mail cannot be)")
    await world.send(SetNotificationPreferences(account_id=account_id, email=False), about=account_id)
    read = MarkNotificationsRead(account_id=account_id, notification_ids=[uuid.UUID(welcome["notification_id"])])
    await world.send(read, about=account_id)
    # Nothing announces a preference; the read mark, sent after it to the same partition, shows
    # the service has applied both before the top-up below can be told.
    await notice_of(world, account_id, NoticeKind.WELCOME, read=True)

    await top_up(world, account_id, usd(5000))
    await fail_checks_until_locked(world, buyer)
    await world.event(AccountStatusChanged, account_id=account_id, status=AccountStatus.LOCKED)
    await world.event(SuspiciousActivityDetected, account_id=account_id, kind=SuspiciousActivity.REPEATED_FAILED_CHECKS)
    for kind in (NoticeKind.ACCOUNT_LOCKED, NoticeKind.SUSPICIOUS_ACTIVITY):
        mail = arrived(world, await world.event(NotificationEmailed, account_id=account_id, kind=kind.value), buyer)
        text = text_of(mail)
        expect(SECURITY_FOOTER in text, f"the {kind.value} email to say it always goes, as security mail", got=text)

    # The top-up was told before the lock (one partition per account, in order): its notice is stored.
    funded = await notice_of(world, account_id, NoticeKind.WALLET_FUNDED)
    world.say(f"in the inbox: “{funded['subject']}”, email: {funded['email']}")
    expect(funded["email"].startswith("not sent"), "the top-up notice not emailed", got=funded["email"])
    expect(
        not world.seen(NotificationEmailed, notification_id=uuid.UUID(funded["notification_id"])),
        "no NotificationEmailed for the top-up",
    )
    assert buyer.email is not None
    subjects = [str(m["Subject"]) for m in world.mailbox.to(buyer.email)]
    expect(funded["subject"] not in subjects, "no top-up email in the Maildir", got=subjects)
