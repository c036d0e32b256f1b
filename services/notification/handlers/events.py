"""N1: every event a buyer or seller should hear of becomes one notice per recipient, rendered in
their language, stored in their inbox and, where their preferences allow, queued as an email in
the same batch (its delivery record is written before anything is sent).

One handler serves every event type of the table (domain.rules.RULES): it first updates the read
copies the event carries (a recipient's profile, an order's status, card and capture), then
applies each rule that matches. The same fact told twice (a duplicate record, a re-published
event) finds its notice already stored and adds nothing.

**A notice for someone whose profile has not arrived** (the account's AccountRegistered, on
another topic, is read after an event about the account) is *held* (issue 11): it goes to the
inbox at once, rendered in English (that rendering is also the check of its templates: an error
dead-letters this event, now, with the reason), its email is stored ``held`` with no address, and
the recipient keeps the event's facts. When the profile arrives, every held notice of the account
is rendered again in the profile's language and released (``notification_releases``): the inbox
shows the release from then on, and the email worker sends it to the address the holder's
preferences allow (none: the email stays held, never sent). A reminder whose order ended in the
meantime was suppressed by the status change, like any other.
"""

from __future__ import annotations

from typing import Any

from contracts import (
    AccountRegistered,
    Event,
    FundingSourceAdded,
    FundingType,
    OrderStatusChanged,
    PaymentAuthorized,
    PaymentCaptured,
)
from services.notification.domain.delivery import EmailDelivery
from services.notification.domain.notices import HeldNotice, Notification
from services.notification.domain.orders import OrderCopy
from services.notification.domain.reasons import read_reason
from services.notification.domain.recipients import Recipient, channels_for
from services.notification.domain.rendering import DEFAULT_LANGUAGE, LANGUAGES, Rendered, card_label, language_for
from services.notification.domain.rules import (
    NOTIFIED_EVENTS,
    REMINDER_KINDS,
    RULE_OF,
    Rule,
    notification_id,
    rules_for,
)
from services.notification.handlers import handlers
from services.notification.ports import ports
from services.notification.store import DELIVERIES, NOTICES, ORDERS, RECIPIENTS, RELEASES
from shared.aggregates import Load
from shared.consumer import HandlerContext
from shared.logging import get_logger

log = get_logger(__name__)


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
    elif isinstance(event, PaymentCaptured):
        _order(ctx, event.order_id).captured = True
    elif isinstance(event, OrderStatusChanged):
        _order_moved(event, ctx)


def _registered(event: AccountRegistered, ctx: HandlerContext) -> None:
    recipient = ctx.get(RECIPIENTS, event.account_id)
    if recipient is None:  # preferences set before the registration arrived are kept
        recipient = ctx.add(RECIPIENTS, Recipient(event.account_id))
    recipient.language = event.language
    recipient.full_name = event.full_name
    recipient.email = event.email
    recipient.has_profile = True
    _release(recipient, ctx)


def _release(recipient: Recipient, ctx: HandlerContext) -> None:
    """Every notice held for the recipient, rendered in its language and emailed where allowed."""
    held = recipient.release()
    emails = 0
    for notice in held:
        rule = RULE_OF.get(notice.kind)
        if rule is None:  # a kind no rule makes any more (a later version): its inbox copy stays
            log.warning("held notice of an unknown kind left as it was", kind=notice.kind.value)
            continue
        rendered = _render(
            rule, notice.event(), ctx, language=recipient.language, name=recipient.full_name, card=notice.card
        )
        address = recipient.email if channels_for(recipient, rule.category).email else None
        ctx.append(RELEASES, _release_row(notice, recipient.account_id, rendered, address))
        emails += address is not None
    if held:
        log.info("held notices released", count=len(held), emailed=emails, language=recipient.language)
    if emails:
        ctx.after_commit(ports(ctx).wake_worker)


def _release_row(notice: HeldNotice, recipient_id: str, rendered: Rendered, address: str | None) -> dict[str, Any]:
    return {
        "notification_id": notice.notification_id,
        "recipient_id": recipient_id,
        "language": rendered.language,
        "subject": rendered.subject,
        "body": rendered.text,
        "html": rendered.html,
        "address": address,
    }


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
    if rule.superseded is not None and order is not None and rule.superseded(order):
        log.info("notification superseded by what the order told already", kind=rule.kind.value, order_id=order_id)
        return
    stale = rule.reminder and order is not None and order.is_final  # read after the order ended (another topic)
    if stale:
        log.info("stale reminder kept in the inbox, not sent", kind=rule.kind.value, order_id=order_id)
    card = _card(event, order)
    recipient = ctx.get(RECIPIENTS, recipient_id)
    if recipient is None or not recipient.has_profile:
        _hold(rule, event, nid, card, email=not stale, recipient=recipient, ctx=ctx)
        return
    channels = channels_for(recipient, rule.category)
    if channels.none:
        log.info("notification opted out of", kind=rule.kind.value, recipient=recipient_id)
        return
    rendered = _render(rule, event, ctx, language=recipient.language, name=recipient.full_name, card=card)
    _record(rule, event, nid, rendered, ctx)
    address = recipient.email if channels.email and not stale else None
    if address is not None:
        ctx.add(DELIVERIES, EmailDelivery.new(nid, recipient_id, address, rule.kind, order_id))
        ctx.after_commit(ports(ctx).wake_worker)
    log.info("notification recorded", recipient=recipient_id, kind=rule.kind.value, email=address is not None)


def _hold(
    rule: Rule,
    event: Event,
    nid: str,
    card: str | None,
    *,
    email: bool,
    recipient: Recipient | None,
    ctx: HandlerContext,
) -> None:
    """The recipient's profile has not arrived: the inbox gets it now in English, the email waits."""
    recipient_id: str = getattr(event, rule.recipient)
    rendered = _render(rule, event, ctx, language=DEFAULT_LANGUAGE, name=None, card=card)
    for language in LANGUAGES:  # whichever the profile says: a template error is this event's, now
        if language != DEFAULT_LANGUAGE:
            _render(rule, event, ctx, language=language, name=None, card=card)
    _record(rule, event, nid, rendered, ctx)
    if email:
        ctx.add(DELIVERIES, EmailDelivery.held(nid, recipient_id, rule.kind, _order_id(event, ctx.envelope)))
    recipient = recipient or ctx.add(RECIPIENTS, Recipient(recipient_id))
    dropped = recipient.hold(HeldNotice.of(nid, rule.kind, event, card))
    if dropped is not None:
        log.warning("oldest held notice let go: it stays in the inbox, unsent", kind=dropped.kind.value)
    log.info("notification held until the recipient's profile arrives", recipient=recipient_id, kind=rule.kind.value)


def _record(rule: Rule, event: Event, nid: str, rendered: Rendered, ctx: HandlerContext) -> None:
    ctx.add(
        NOTICES,
        Notification(
            notification_id=nid,
            recipient_id=getattr(event, rule.recipient),
            kind=rule.kind,
            category=rule.category,
            reference=rule.reference(event, ctx.envelope),
            order_id=_order_id(event, ctx.envelope),
            language=rendered.language,
            subject=rendered.subject,
            body=rendered.text,
            html=rendered.html,
            correlation_id=ctx.correlation_id,
        ),
    )


def _render(
    rule: Rule, event: Event, ctx: HandlerContext, *, language: str | None, name: str | None, card: str | None
) -> Rendered:
    return ports(ctx).renderer.render(rule.kind, language_for(language), _context(rule, event, name, card))


def _context(rule: Rule, event: Event, name: str | None, card: str | None) -> dict[str, Any]:
    text = getattr(event, "reason", None)
    reason = read_reason(text if isinstance(text, str) else None)
    return {
        "event": event,
        "name": name,
        "category": rule.category.value,
        "card": card,
        "reason_code": reason.code,
        "gave_up_after": reason.gave_up_after,
        "unpaid": reason.unpaid,
    }


def _card(event: Event, order: OrderCopy | None) -> str | None:
    if isinstance(event, FundingSourceAdded):
        return _source_label(event)
    return card_label(order.card_brand, order.card_last4) if order is not None else None


def _source_label(event: FundingSourceAdded) -> str:
    source = event.source
    if source.type is FundingType.CARD:
        return card_label(source.brand.value if source.brand else None, source.last4) or "Card"
    return f"•••• {source.last4}"


_EVENTS: tuple[type[Event], ...] = (*NOTIFIED_EVENTS, PaymentAuthorized)
for _event in _EVENTS:
    handlers.on(_event, loads=LOADS)(on_event)
