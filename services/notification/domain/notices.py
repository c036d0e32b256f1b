"""A notification as stored: the rendered message in the recipient's inbox (N1, N2), and the facts
a notice is kept with while its recipient's profile has not arrived (:class:`HeldNotice`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from contracts import Event, payload_model
from services.notification.domain.rules import Category, NoticeKind


@dataclass(slots=True)
class Notification:
    """One notice for one person; ``notification_id`` is derived from (recipient, kind, reference)."""

    notification_id: str
    recipient_id: str
    kind: NoticeKind
    category: Category
    reference: str
    order_id: str | None
    language: str
    subject: str
    body: str
    html: str
    correlation_id: str
    read_at: datetime | None = None

    def mark_read(self, now: datetime) -> bool:
        if self.read_at is not None:
            return False
        self.read_at = now
        return True


@dataclass(frozen=True, slots=True)
class HeldNotice:
    """A notice made before its recipient's profile arrived: what it takes to render it again in
    the profile's language and send it then. The event is kept as it came (an event never holds a
    secret); the card as the label shown (brand and last four), since the order is not at hand
    when the profile arrives."""

    notification_id: str
    kind: NoticeKind
    event_type: str
    event_version: int
    event_json: str
    card: str | None = None

    @classmethod
    def of(cls, notification_id: str, kind: NoticeKind, event: Event, card: str | None) -> HeldNotice:
        return cls(notification_id, kind, event.message_type, event.version, event.model_dump_json(), card)

    def event(self) -> Event:
        """The event again, validated by its contract like any message read from Kafka."""
        model = payload_model(self.event_type, self.event_version)
        event = model.model_validate_json(self.event_json)
        assert isinstance(event, Event)
        return event

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.notification_id,
            "kind": self.kind.value,
            "type": self.event_type,
            "version": self.event_version,
            "event": self.event_json,
            "card": self.card,
        }

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> HeldNotice:
        return cls(
            value["id"], NoticeKind(value["kind"]), value["type"], value["version"], value["event"], value["card"]
        )


def dump_held(notices: tuple[HeldNotice, ...]) -> str | None:
    """The column's text; None when nothing is held (the common case: no parsing at all)."""
    return json.dumps([n.to_json() for n in notices], ensure_ascii=False) if notices else None


def load_held(text: str | None) -> tuple[HeldNotice, ...]:
    return tuple(HeldNotice.from_json(value) for value in json.loads(text)) if text else ()
