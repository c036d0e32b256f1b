"""Refusals the account's rules share."""

from __future__ import annotations

from contracts import DeclineReason
from shared.errors import CommandRefused


class PaymentDeclined(CommandRefused):
    """A payment the account's rules decline: answered with PaymentAuthorizationDeclined, not a rejection."""

    def __init__(self, reason: DeclineReason, detail: str) -> None:
        super().__init__(reason.value, detail)
        self.decline_reason = reason
