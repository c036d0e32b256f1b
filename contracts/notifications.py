"""Notifications N2: the holder's channel preferences and inbox, and what became of each email.

A notification's id is derived from who it is for, what it is about and the fact it tells
(``uuid5``), so every service and tool names the same notification the same way, and the
email it goes out as carries a Message-ID made from it (``<id@notifications.tradeguard>``).
"""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Annotated

from pydantic import Field

from contracts.envelope import AcceptJsonForm, Command, Event
from contracts.registration import ACCOUNT_ID, OPERATOR_ID
from contracts.topics import NOTIFICATION_COMMANDS, NOTIFICATION_EVENTS

NOTIFICATION_ID = Field(description="The notification (uuid5 of recipient, kind and reference).")


class EmailOutcome(StrEnum):
    """What the SMTP server said to one attempt to send an email."""

    SENT = "sent"  # accepted (250): delivered as far as we are concerned
    UNAVAILABLE = "unavailable"  # could not connect, timed out, or a 4xx: try again later
    REFUSED = "refused"  # a 5xx for the recipient or the message: trying again would not help


# ---------------------------------------------------------------------------- commands


class SetNotificationPreferences(Command):
    """The holder chooses channels. Security messages (a lock, suspicious activity, a new card or
    marketplace grant) always go to the inbox and, when an address is known, by email."""

    topic = NOTIFICATION_COMMANDS

    account_id: str = ACCOUNT_ID
    email: bool = Field(default=True, description="Email for everything but security (which always goes).")
    marketing: bool = Field(default=True, description="Marketing-like messages (welcome and tips), any channel.")


class MarkNotificationsRead(Command):
    """The holder has read these notifications of their inbox."""

    topic = NOTIFICATION_COMMANDS

    account_id: str = ACCOUNT_ID
    notification_ids: list[Annotated[uuid.UUID, AcceptJsonForm()]] = Field(min_length=1, max_length=100)


class RecordEmailOutcome(Command):
    """The notification service's email worker hands what the SMTP server answered back to the
    delivery's own handlers, so every change of a delivery goes through one place."""

    topic = NOTIFICATION_COMMANDS

    account_id: str = ACCOUNT_ID
    notification_id: Annotated[uuid.UUID, AcceptJsonForm()] = NOTIFICATION_ID
    attempt: int = Field(ge=1, description="The delivery's attempt this answers (a late answer is ignored).")
    outcome: Annotated[EmailOutcome, AcceptJsonForm()]
    detail: str = Field(default="", max_length=500, description="The server's reply or the error, for people.")


class RedriveNotification(Command):
    """An operator sends a dead-lettered email again (after fixing the address or the server)."""

    topic = NOTIFICATION_COMMANDS

    account_id: str = ACCOUNT_ID
    notification_id: Annotated[uuid.UUID, AcceptJsonForm()] = NOTIFICATION_ID
    operator_id: str = OPERATOR_ID


# ---------------------------------------------------------------------------- events


class NotificationEmailed(Event):
    """The SMTP server accepted the notification's email."""

    topic = NOTIFICATION_EVENTS

    account_id: str = ACCOUNT_ID
    notification_id: Annotated[uuid.UUID, AcceptJsonForm()] = NOTIFICATION_ID
    kind: str = Field(examples=["payment_failed"])
    message_id: str = Field(description="The email's Message-ID header.", examples=["<…@notifications.tradeguard>"])
    attempts: int = Field(ge=1)


class NotificationUndeliverable(Event):
    """The notification's email was given up on (dead-lettered) with the reason; an operator may re-drive it."""

    topic = NOTIFICATION_EVENTS

    account_id: str = ACCOUNT_ID
    notification_id: Annotated[uuid.UUID, AcceptJsonForm()] = NOTIFICATION_ID
    kind: str
    reason: str = Field(max_length=500)
    attempts: int = Field(ge=0)
