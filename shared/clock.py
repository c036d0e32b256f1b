"""The one source of time for stores and handlers (SPEC X8).

Every deadline and every stored timestamp reads a :class:`Clock`; production uses the
system clock, in-process tests :class:`ManualClock`, and a stack of processes (tests,
scenarios, the demo) :class:`FileClock`; each is moved forward instead of sleeping.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
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


class FileClock:
    """The system clock moved forward by an offset kept in a file (X8 across processes).

    Tests, scenarios and the demo run every service with ``TRADEGUARD_CLOCK_FILE`` pointing at
    one file; ``tradeguard clock advance 16d`` (or :func:`advance_clock_file`) raises the offset
    and every process sees it at its next reading, so a 15-day window passes in a moment. The
    file is re-read only when its modification time changes. Never set in production.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: int | None = None
        self._offset = timedelta(0)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset()

    def offset(self) -> timedelta:
        try:
            stamp = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return timedelta(0)
        if stamp != self._stamp:
            self._offset = read_clock_offset(self.path)
            self._stamp = stamp
        return self._offset


def read_clock_offset(path: Path) -> timedelta:
    """The offset a clock file holds (0 when it does not exist)."""
    try:
        data = json.loads(path.read_text() or "{}")
    except FileNotFoundError:
        return timedelta(0)
    return timedelta(seconds=float(data.get("offset_seconds", 0)))


def advance_clock_file(path: Path, by: timedelta) -> timedelta:
    """Move every process reading ``path`` forward by ``by``; returns the new offset."""
    if by < timedelta(0):
        raise ValueError("a clock never moves backwards")
    offset = read_clock_offset(path) + by
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps({"offset_seconds": offset.total_seconds()}))
    temporary.replace(path)  # readers see the old offset or the new one, never half a file
    return offset


def clock_from_environment() -> Clock:
    """:class:`FileClock` when ``TRADEGUARD_CLOCK_FILE`` is set, else the system clock."""
    path = os.environ.get(CLOCK_FILE_VARIABLE)
    return FileClock(Path(path)) if path else SYSTEM_CLOCK


CLOCK_FILE_VARIABLE = "TRADEGUARD_CLOCK_FILE"
