"""N2: what the notification service knows of a recipient, and which channels a notice takes.

The read copy comes from ``AccountRegistered`` (language, name, email address); the
preferences from ``SetNotificationPreferences``. The channel rule is one function:

=============  ======================  ==========================================
category       inbox                   email (when an address is known)
=============  ======================  ==========================================
security       always                  always: it cannot be opted out of
account        always                  unless the holder turned email off
transactional  always                  unless the holder turned email off
marketing      unless opted out        unless opted out, or email is off
=============  ======================  ==========================================
"""

from __future__ import annotations

from dataclasses import dataclass

from services.notification.domain.rendering import DEFAULT_LANGUAGE
from services.notification.domain.rules import Category


@dataclass(slots=True)
class Recipient:
    account_id: str
    language: str = DEFAULT_LANGUAGE
    full_name: str | None = None
    email: str | None = None
    email_enabled: bool = True
    marketing_enabled: bool = True


@dataclass(frozen=True, slots=True)
class Channels:
    inbox: bool
    email: bool

    @property
    def none(self) -> bool:
        return not (self.inbox or self.email)


def channels_for(recipient: Recipient | None, category: Category) -> Channels:
    """The table in the module docstring; someone we know nothing of gets the inbox only."""
    if recipient is None:
        return Channels(inbox=True, email=False)
    if category is Category.SECURITY:
        return Channels(inbox=True, email=recipient.email is not None)
    wanted = category is not Category.MARKETING or recipient.marketing_enabled
    return Channels(inbox=wanted, email=wanted and recipient.email_enabled and recipient.email is not None)
