"""N1: every event a buyer or seller should hear of becomes one notice per recipient, rendered in
their language, stored in their inbox and, where their preferences allow, queued as an email in
the same batch (its delivery record is written before anything is sent).

One handler serves every event type of the table (domain.rules.RULES): it first updates the read
copies the event carries (a recipient's language and address, an order's status and card), then
applies each rule that matches. The same fact told twice (a duplicate record, a re-published
event) finds its notice already stored and adds nothing.
"""

from __future__ import annotations

import re
from typing import Any

from contracts import (
    AccountRegistered,
    Event,
    FundingSourceAdded,
    FundingType,
    OrderStatusChanged,
    PaymentAuthorized,
)
from services.notification.domain.delivery import EmailDelivery
from services.notification.domain.notices import Notification
from services.notification.domain.orders import OrderCopy
from services.notification.domain.recipients import Channels, Recipient, channels_for
from services.notification.domain.rendering import card_label, language_for
from services.notification.domain.rules import (
    NOTIFIED_EVENTS,
    REMINDER_KINDS,
    Rule,
    notification_id,
    rules_for,
)
from services.notification.handlers import handlers
from services.notification.ports import ports
from services.notification.store import DELIVERIES, NOTICES, ORDERS, RECIPIENTS
from shared.aggregates import Load
from shared.consumer import HandlerContext
from shared.logging import get_logger

log = get_logger(__name__)
_REASON_CODE = re.compile(r"^([a-z_]+)(:|$)")


def _notice_ids(event: Any, envelope: Any) -> list[str]:
    ids = [
        str(notification_id(getattr(event, r.recipient), r.kind, r.reference(event, envelope)))
        for r in rules_for(event)
    ]
    if isinstance(event, OrderStatusChanged):  # the reminders this status may make stale
        ids += [str(notification_id(event.buyer_id, kind, event.order_id)) for kind in REMINDER_KINDS]
        ids += [str(notification_id(event.seller_id, kind, event.order_id)) for kind in REMINDER_KINDS]
    return ids


def _recipient_ids(event: Any, _envelope: Any) -> list[str]:
    ids = {str(getattr(event, r.recipient)) for r in rules_for(event)}
    if isinstance(event, AccountRegistered):
        ids.add(event.account_id)
    return sorted(ids)


def _order_id(event: Any, _envelope: Any) -> str | None:
    return getattr(event, "order_id", None)


LOADS: list[Load[Any]] = [
    RECIPIENTS.each(_recipient_ids),
    NOTICES.each(_notice_ids),
    DELIVERIES.each(_notice_ids),
    ORDERS.by(_order_id),
]


def on_event(event: Event, ctx: HandlerContext) -> None:
    update_read_copies(event, ctx)
    for rule in rules_for(event):
        notify(rule, event, ctx)


# ---------------------------------------------------------------------- read copies


def update_read_copies(event: Event, ctx: HandlerContext) -> None:
    if isinstance(event, AccountRegistered):
        _registered(event, ctx)
    elif isinstance(event, PaymentAuthorized):
        _paid_with(event, ctx)
    elif isinstance(event, OrderStatusChanged):
        _order_moved(event, ctx)


def _registered(event: AccountRegistered, ctx: HandlerContext) -> None:
    recipient = ctx.get(RECIPIENTS, event.account_id)
    if recipient is None:  # preferences set before the registration arrived are kept
        recipient = ctx.add(RECIPIENTS, Recipient(event.account_id))
    recipient.language = event.language
    recipient.full_name = event.full_name
    recipient.email = event.email


def _order(ctx: HandlerContext, order_id: str) -> OrderCopy:
    return ctx.get(ORDERS, order_id) or ctx.add(ORDERS, OrderCopy(order_id))


def _paid_with(event: PaymentAuthorized, ctx: HandlerContext) -> None:
    """The card (brand and last four) a message about the order may name; never the token."""
    source = event.source
    if source is None or source.type is not FundingType.CARD:
        return
    order = _order(ctx, event.order_id)
    order.card_brand = source.brand.value if source.brand else None
    order.card_last4 = source.last4


def _order_moved(event: OrderStatusChanged, ctx: HandlerContext) -> None:
    order = _order(ctx, event.order_id)
    order.status = event.status
    if not order.is_final:
        return
    for recipient_id in (event.buyer_id, event.seller_id):  # per-order ordering: stale reminders stay unsent
        for kind in REMINDER_KINDS:
            delivery = ctx.get(DELIVERIES, str(notification_id(recipient_id, kind, event.order_id)))
            if delivery is not None and delivery.suppress():
                log.info(
                    "stale reminder suppressed", order_id=event.order_id, kind=kind.value, status=event.status.value
                )


# ---------------------------------------------------------------------- notices


def notify(rule: Rule, event: Event, ctx: HandlerContext) -> None:
    recipient_id: str = getattr(event, rule.recipient)
    reference = rule.reference(event, ctx.envelope)
    nid = str(notification_id(recipient_id, rule.kind, reference))
    if ctx.get(NOTICES, nid) is not None:
        log.info("notification already recorded", kind=rule.kind.value, reference=reference)
        return
    order_id = _order_id(event, ctx.envelope)
    order = ctx.get(ORDERS, order_id) if order_id else None
    recipient = ctx.get(RECIPIENTS, recipient_id)
    channels = channels_for(recipient, rule.category)
    if rule.reminder and order is not None and order.is_final:  # read after the order ended (another topic)
        log.info("stale reminder kept in the inbox, not sent", kind=rule.kind.value, order_id=order_id)
        channels = Channels(inbox=channels.inbox, email=False)
    if channels.none:
        log.info("notification opted out of", kind=rule.kind.value, recipient=recipient_id)
        return
    language = language_for(recipient.language if recipient else None)
    rendered = ports(ctx).renderer.render(rule.kind, language, _context(rule, event, recipient, order))
    ctx.add(
        NOTICES,
        Notification(
            notification_id=nid,
            recipient_id=recipient_id,
            kind=rule.kind,
            category=rule.category,
            reference=reference,
            order_id=order_id,
            language=rendered.language,
            subject=rendered.subject,
            body=rendered.text,
            html=rendered.html,
            correlation_id=ctx.correlation_id,
        ),
    )
    if channels.email and recipient is not None and recipient.email is not None:
        ctx.add(DELIVERIES, EmailDelivery.new(nid, recipient_id, recipient.email, rule.kind, order_id))
        ctx.after_commit(ports(ctx).wake_worker)
    log.info("notification recorded", recipient=recipient_id, kind=rule.kind.value, email=channels.email)


def _context(rule: Rule, event: Event, recipient: Recipient | None, order: OrderCopy | None) -> dict[str, Any]:
    card = card_label(order.card_brand, order.card_last4) if order is not None else None
    if isinstance(event, FundingSourceAdded):
        card = _source_label(event)
    reason = getattr(event, "reason", None)
    match = _REASON_CODE.match(reason) if isinstance(reason, str) else None
    return {
        "event": event,
        "name": recipient.full_name if recipient else None,
        "category": rule.category.value,
        "card": card,
        "reason_code": match.group(1) if match else None,
    }


def _source_label(event: FundingSourceAdded) -> str:
    source = event.source
    if source.type is FundingType.CARD:
        return card_label(source.brand.value if source.brand else None, source.last4) or "Card"
    return f"•••• {source.last4}"


_EVENTS: tuple[type[Event], ...] = (*NOTIFIED_EVENTS, PaymentAuthorized)
for _event in _EVENTS:
    handlers.on(_event, loads=LOADS)(on_event)
