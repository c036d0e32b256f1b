"""Notification handlers: every event someone should hear of is recorded once in their inbox."""

from __future__ import annotations

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
from services.notification.store import NotificationStore
from shared.consumer import HandlerContext, MessageHandlers
from shared.logging import get_logger

handlers = MessageHandlers()
log = get_logger(__name__)


async def record_notice(event: Message, ctx: HandlerContext) -> None:
    notice = notice_for(event, ctx.envelope.idempotency_key)
    if notice is None:
        return
    if await NotificationStore(ctx.connection).add_once(notice, ctx.correlation_id):
        log.info("notification recorded", recipient=notice.recipient_id, kind=notice.kind.value)
    else:
        log.info("notification already recorded", kind=notice.kind.value, reference=notice.reference)


for _event in (
    WalletFunded,
    PaymentCaptured,
    PaymentFailed,
    FundsHeld,
    FundsReleased,
    WalletCredited,
    OrderStatusChanged,
):
    handlers.on(_event)(record_notice)
