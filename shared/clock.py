"""The one source of time for stores and handlers (SPEC X8).

Every deadline and every stored timestamp reads a :class:`Clock`; production uses the
system clock, tests and scenarios use :class:`ManualClock` and move it forward instead
of sleeping.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """Tells the current time, always timezone-aware (UTC)."""

    def now(self) -> datetime: ...


class SystemClock:
    """The machine's clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock that only moves when told to (tests, scenarios, the demo)."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, by: timedelta) -> datetime:
        if by < timedelta(0):
            raise ValueError("a clock never moves backwards")
        self._now += by
        return self._now


SYSTEM_CLOCK = SystemClock()
