"""Errors the shared messaging core understands.

TradeGuardError
└── CommandRefused      a well-formed command breaks a business rule: answered with CommandRejected

A record that cannot be decoded is not raised as an error: the consumer sends it to the
dead-letter topic with the validation error as the reason.
"""

from __future__ import annotations


class TradeGuardError(Exception):
    """Root of every error raised on purpose by TradeGuard code."""


class CommandRefused(TradeGuardError):
    """Raised by a rule or handler, before it writes anything, to refuse a command."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason
