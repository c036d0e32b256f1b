"""N2: the holder's preferences and read marks, the email worker's outcomes and the operator's
re-drives; every change of a delivery happens here, in a batch like any other."""

from __future__ import annotations

import uuid

from contracts import (
    MarkNotificationsRead,
    NotificationEmailed,
    NotificationUndeliverable,
    RecordEmailOutcome,
    RedriveNotification,
    SetNotificationPreferences,
)
from services.notification.domain.delivery import EmailDelivery, Step
from services.notification.domain.recipients import Recipient
from services.notification.handlers import handlers
from services.notification.ports import ports
from services.notification.store import DELIVERIES, NOTICES, RECIPIENTS
from shared.consumer import HandlerContext
from shared.errors import CommandRefused
from shared.logging import get_logger

log = get_logger(__name__)
DELIVERY = DELIVERIES.by(lambda command, _envelope: str(command.notification_id))


@handlers.on(SetNotificationPreferences, loads=[RECIPIENTS.by("account_id")])
def set_preferences(command: SetNotificationPreferences, ctx: HandlerContext) -> None:
    recipient = ctx.get(RECIPIENTS, command.account_id) or ctx.add(RECIPIENTS, Recipient(command.account_id))
    recipient.email_enabled = command.email
    recipient.marketing_enabled = command.marketing
    log.info("notification preferences set", email=command.email, marketing=command.marketing)


@handlers.on(MarkNotificationsRead, loads=[NOTICES.each(lambda c, _e: [str(i) for i in c.notification_ids])])
def mark_read(command: MarkNotificationsRead, ctx: HandlerContext) -> None:
    for notification_id in command.notification_ids:
        notice = ctx.get(NOTICES, str(notification_id))
        if notice is None or notice.recipient_id != command.account_id:  # not theirs: nothing to mark
            continue
        notice.mark_read(ctx.now)


@handlers.on(RecordEmailOutcome, loads=[DELIVERY])
def record_outcome(command: RecordEmailOutcome, ctx: HandlerContext) -> None:
    delivery = ctx.get(DELIVERIES, str(command.notification_id))
    if delivery is None:
        log.warning("outcome for an unknown delivery ignored", notification_id=str(command.notification_id))
        return
    step = delivery.record(command.outcome, command.attempt, command.detail, ctx.now, ports(ctx).policy)
    log.info("email outcome recorded", outcome=command.outcome.value, attempt=command.attempt, step=step.value)
    if step is Step.DELIVERED:
        ctx.emit(_emailed(delivery), idempotency_key=f"emailed:{delivery.notification_id}")
    elif step is Step.DEAD:
        _dead(delivery, ctx)
    elif step is Step.RETRY:
        ctx.after_commit(ports(ctx).wake_worker)  # it sleeps until the earliest not_before


@handlers.on(RedriveNotification, loads=[DELIVERY])
def redrive(command: RedriveNotification, ctx: HandlerContext) -> None:
    delivery = ctx.get(DELIVERIES, str(command.notification_id))
    if delivery is None or delivery.recipient_id != command.account_id:
        raise CommandRefused("notification_not_found", f"no email for notification {command.notification_id}")
    if not delivery.redrive():
        raise CommandRefused(
            "not_dead_lettered", f"notification {command.notification_id} is {delivery.state.value}, not dead"
        )
    log.info("email re-driven", operator=command.operator_id, notification_id=delivery.notification_id)
    ctx.after_commit(ports(ctx).wake_worker)


def _emailed(delivery: EmailDelivery) -> NotificationEmailed:
    return NotificationEmailed(
        account_id=delivery.recipient_id,
        notification_id=uuid.UUID(delivery.notification_id),
        kind=delivery.kind.value,
        message_id=delivery.message_id,
        attempts=delivery.attempts,
    )


def _dead(delivery: EmailDelivery, ctx: HandlerContext) -> None:
    log.error("email dead-lettered", notification_id=delivery.notification_id, reason=delivery.last_error)
    ctx.emit(
        NotificationUndeliverable(
            account_id=delivery.recipient_id,
            notification_id=uuid.UUID(delivery.notification_id),
            kind=delivery.kind.value,
            reason=delivery.last_error or "unknown",
            attempts=delivery.attempts,
        ),
        idempotency_key=f"undeliverable:{delivery.notification_id}:{ctx.envelope.message_id}",
    )
