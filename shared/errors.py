"""Errors the shared messaging core understands.

TradeGuardError
├── CommandRefused      a well-formed command breaks a business rule: answered with CommandRejected
├── SystemFault         the database or the network failed, not the message: the batch is retried
├── VersionConflict     (shared.unit_of_work) rows changed since they were read: the batch is re-run
└── UndeclaredRead      (shared.unit_of_work) a handler read an aggregate it did not declare: a bug

A record that cannot be decoded is not raised as an error: the consumer sends it to the
dead-letter topic with the reason (see the table in shared.consumer).
"""

from __future__ import annotations


class TradeGuardError(Exception):
    """Root of every error raised on purpose by TradeGuard code."""


class CommandRefused(TradeGuardError):
    """Raised by a rule or handler to refuse a command; nothing the handler changed is kept."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


class SystemFault(TradeGuardError):
    """The batch could not be applied for a reason outside it (database busy or down)."""
