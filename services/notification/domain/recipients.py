"""N2: what the notification service knows of a recipient, and which channels a notice takes.

The read copy comes from ``AccountRegistered`` (language, name, email address): the *profile*;
the preferences from ``SetNotificationPreferences``. Until the profile arrives, the recipient
*holds* the notices made for it (:class:`~services.notification.domain.notices.HeldNotice`):
they wait to be rendered in the profile's language and emailed. The channel rule is one function:

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

from services.notification.domain.notices import HeldNotice, dump_held, load_held
from services.notification.domain.rendering import DEFAULT_LANGUAGE
from services.notification.domain.rules import Category

MAX_HELD = 100
"""Notices one recipient holds at most. An account that never registers here (a seller known
only by its id) would otherwise grow its row with every order; past this, the oldest held notice
is let go: it stays in the inbox as it was made, and is never emailed."""


@dataclass(slots=True)
class Recipient:
    account_id: str
    language: str = DEFAULT_LANGUAGE
    full_name: str | None = None
    email: str | None = None
    email_enabled: bool = True
    marketing_enabled: bool = True
    has_profile: bool = False
    """AccountRegistered was read: language, name and address are the account's own."""
    held: str | None = None
    """The held notices as JSON (see :meth:`hold`); None when none is (no parsing on the hot path)."""

    def held_notices(self) -> tuple[HeldNotice, ...]:
        return load_held(self.held)

    def hold(self, notice: HeldNotice) -> HeldNotice | None:
        """Keep ``notice`` until the profile arrives; the one let go to make room, if any."""
        notices = (*self.held_notices(), notice)
        dropped = notices[0] if len(notices) > MAX_HELD else None
        self.held = dump_held(notices[-MAX_HELD:])  # a new value, never changed in place: the batch compares it
        return dropped

    def release(self) -> tuple[HeldNotice, ...]:
        """Every held notice, oldest first, and none held any more."""
        notices, self.held = self.held_notices(), None
        return notices


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
