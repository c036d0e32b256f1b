"""The email worker (N2): sends the emails the handlers queued, outside any batch, and hands each
server answer back to the delivery's handlers as a ``RecordEmailOutcome`` command.

It never changes a delivery itself: domain/delivery.py says what each answer leads to (sent,
retried later with backoff and jitter, dead-lettered with the reason), and the handler applies
it in a batch like any other.

**Why an email goes out once.**

1. *One delivery per notification.* The notification's id is derived from (recipient, kind,
   reference); its delivery record is written in the same transaction as the notification and
   the consumer's inbox entry, before anything is sent. A duplicate event (the same record
   again, or the same fact re-published) finds the notification stored and adds nothing, so
   there is never a second delivery to send.
2. *One send per attempt.* The worker sends only ``pending`` rows (and ``held`` ones once released
   with an address: domain/delivery.py) that are due, and remembers the row version it sent
   for: it does not send again until the handler has recorded the answer (the version moves),
   even while the answer is still on its way through Kafka. A release is written once per
   notification, so a held notice has one delivery like any other.
3. *Accepted means recorded.* Right after the server's 250 the worker writes the notification
   into its send log (``email_send_log``), then reports. After a restart a row still
   ``pending`` but in the send log is re-reported as sent, not re-sent.
4. *The gap.* If the process dies between the server's 250 and the send-log write (a few
   milliseconds), the row is still pending with no log entry, and the email is sent again on
   restart: **at most one resend, with the same Message-ID** (``<notification-id@...>``), which
   the receiving server or mail client can drop as a duplicate (the local mailbox of ``make
   run`` does). No other path sends a notification twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts import EmailOutcome, RecordEmailOutcome
from services.notification.domain.delivery import DeliveryState
from services.notification.mail import Answer, Outgoing
from services.notification.ports import NotificationPorts
from services.notification.store import email_deliveries, email_send_log, notification_releases, notifications
from shared.broker import RecordSender
from shared.clock import Clock
from shared.consumer import outgoing
from shared.db import reading
from shared.logging import RateLimitedLog, get_logger

log = get_logger(__name__)
BATCH = 50


class EmailWorker:
    def __init__(self, engine: AsyncEngine, producer: RecordSender, ports: NotificationPorts, clock: Clock) -> None:
        self._engine, self._producer, self._ports, self._clock = engine, producer, ports, clock
        self._sent: dict[str, int] = {}  # notification id -> the row version its answer is awaited for
        self._errors = RateLimitedLog(log, interval=10.0)

    async def run(self) -> None:
        while True:
            rows: list[Any] = []
            try:
                rows, next_due = await self._due()
                if rows:
                    await self._send(rows)
            except Exception as error:  # the database or the broker away: try again shortly
                self._errors.warning("email worker pass failed; will retry", error=repr(error))
                next_due = 1.0
            await self._sleep(0.0 if rows else next_due)

    async def _sleep(self, seconds: float | None) -> None:
        """Until a batch queues an email (after_commit wakes it) or the next retry falls due."""
        due = self._ports.deliveries_due
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(due.wait(), timeout=seconds)
        due.clear()

    async def _due(self) -> tuple[list[Any], float | None]:
        """Pending emails due now and not awaiting an answer; seconds until the next one is due."""
        now = self._clock.now()
        d, n, r = email_deliveries, notifications, notification_releases
        # A held notice goes as its release renders it (the profile's language), to the address the
        # release names; a held one without a release, or released without an address, is not sent.
        released = sa.and_(d.c.state == DeliveryState.HELD.value, r.c.address.is_not(None))
        query = (
            sa.select(
                d.c.notification_id,
                d.c.recipient_id,
                sa.func.coalesce(d.c.address, r.c.address).label("address"),
                d.c.message_id,
                d.c.attempts,
                d.c.not_before,
                d.c.version,
                sa.func.coalesce(r.c.subject, n.c.subject).label("subject"),
                sa.func.coalesce(r.c.body, n.c.body).label("body"),
                sa.func.coalesce(r.c.html, n.c.html).label("html"),
                sa.func.coalesce(r.c.language, n.c.language).label("language"),
                email_send_log.c.accepted_at,
            )
            .join(n, n.c.notification_id == d.c.notification_id)
            .outerjoin(r, r.c.notification_id == d.c.notification_id)
            .outerjoin(email_send_log, email_send_log.c.notification_id == d.c.notification_id)
            .where(sa.or_(d.c.state == DeliveryState.PENDING.value, released))
            .order_by(d.c.not_before, n.c.id)  # due ones in the order they were made: a buyer reads them in order
        )
        async with reading(self._engine) as conn:
            rows = (await conn.execute(query)).all()
        pending = {str(row.notification_id) for row in rows}
        self._sent = {k: v for k, v in self._sent.items() if k in pending}  # answered: forget
        due: list[Any] = []
        later: float | None = None
        for row in rows:
            if self._sent.get(str(row.notification_id)) == row.version:
                continue
            when = _aware(row.not_before)
            if when is None or when <= now:
                due.append(row)
            else:
                wait = (when - now).total_seconds()
                later = wait if later is None else min(later, wait)
        return due[:BATCH], later

    async def _send(self, rows: list[Any]) -> None:
        accepted_before = [row for row in rows if row.accepted_at is not None]
        to_send = [row for row in rows if row.accepted_at is None]
        for row in accepted_before:  # sent before a restart, answer not recorded: report, never resend
            await self._report(row, Answer(EmailOutcome.SENT, "accepted before a restart (send log)"))
        if not to_send:
            return
        answers = await self._ports.mailer.send([_outgoing(row) for row in to_send])
        for row, answer in zip(to_send, answers, strict=True):
            if answer.outcome is EmailOutcome.SENT:
                await self._log_accepted(row)
            await self._report(row, answer)

    async def _log_accepted(self, row: Any) -> None:
        async with self._engine.begin() as conn:
            exists = await conn.scalar(
                sa.select(email_send_log.c.notification_id).where(
                    email_send_log.c.notification_id == row.notification_id
                )
            )
            if exists is None:
                await conn.execute(
                    email_send_log.insert().values(
                        notification_id=row.notification_id, message_id=row.message_id, accepted_at=self._clock.now()
                    )
                )

    async def _report(self, row: Any, answer: Answer) -> None:
        attempt = int(str(row.attempts)) + 1
        message = RecordEmailOutcome(
            account_id=str(row.recipient_id),
            notification_id=uuid.UUID(str(row.notification_id)),
            attempt=attempt,
            outcome=answer.outcome,
            detail=answer.detail[:500],
        )
        record = outgoing(
            message,
            source="notification",
            correlation_id=str(row.notification_id),
            idempotency_key=f"email:{row.notification_id}:{attempt}",
            occurred_at=self._clock.now(),
        )
        await self._producer.send_and_wait(record.topic, record.value, key=record.key, headers=list(record.headers))
        self._sent[str(row.notification_id)] = int(str(row.version))  # not again until the row moves
        log.info("email outcome handed back", attempt=attempt, outcome=answer.outcome.value)


def _outgoing(row: Any) -> Outgoing:
    return Outgoing(
        notification_id=str(row.notification_id),
        message_id=str(row.message_id),
        to=str(row.address),
        subject=str(row.subject),
        text=str(row.body),
        html=str(row.html),
        language=str(row.language),
    )


def _aware(value: object) -> datetime | None:
    if value is None:
        return None
    assert isinstance(value, datetime)
    return value if value.tzinfo else value.replace(tzinfo=UTC)
