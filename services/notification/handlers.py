"""Notification handlers: every event someone should hear of is stored once in their inbox."""

from __future__ import annotations

from typing import Any

from contracts import (
    FundsHeld,
    FundsReleased,
    Message,
    OrderStatusChanged,
    PaymentCaptured,
    PaymentFailed,
    WalletCredited,
    WalletFunded,
)
from services.notification.domain import notice_for
from services.notification.store import INBOX, InboxEntry
from shared.consumer import HandlerContext, MessageHandlers
from shared.logging import get_logger

handlers = MessageHandlers()
log = get_logger(__name__)


def _notice_key(event: Message, envelope: Any) -> tuple[str, str, str] | None:
    notice = notice_for(event, envelope.idempotency_key)
    return notice.key if notice is not None else None


def record_notice(event: Message, ctx: HandlerContext) -> None:
    notice = notice_for(event, ctx.envelope.idempotency_key)
    if notice is None:
        return
    if ctx.get(INBOX, notice.key) is not None:
        log.info("notification already recorded", kind=notice.kind.value, reference=notice.reference)
        return
    ctx.add(INBOX, InboxEntry.of(notice, ctx.correlation_id))
    log.info("notification recorded", recipient=notice.recipient_id, kind=notice.kind.value)


for _event in (
    WalletFunded,
    PaymentCaptured,
    PaymentFailed,
    FundsHeld,
    FundsReleased,
    WalletCredited,
    OrderStatusChanged,
):
    handlers.on(_event, loads=[INBOX.by(_notice_key)])(record_notice)
