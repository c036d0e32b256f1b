"""An order's durable timers (S4): which deadline falls when, stored with the order.

Kept as a mapping from :class:`~contracts.Deadline` to its time in ISO 8601 (a JSON column),
with the earliest one copied to ``next_due_at`` for the deadline sweeper (shared/deadlines.py).
A timer is set, moved or cleared only by the order's own rules, in the transaction that
stores the order: it can never fire for a state the order has left.
"""

from __future__ import annotations

from datetime import datetime

from contracts import Deadline

TimerTable = dict[str, str]


def set_timer(timers: TimerTable, deadline: Deadline, at: datetime) -> None:
    timers[deadline.value] = at.isoformat()


def clear_timers(timers: TimerTable, *deadlines: Deadline) -> None:
    for deadline in deadlines:
        timers.pop(deadline.value, None)


def timer_at(timers: TimerTable, deadline: Deadline) -> datetime | None:
    at = timers.get(deadline.value)
    return None if at is None else datetime.fromisoformat(at)


def due(timers: TimerTable, now: datetime) -> list[Deadline]:
    """The timers due at ``now``, earliest first (a tie in the order of :class:`Deadline`)."""
    order = list(Deadline)
    ready = [(datetime.fromisoformat(at), order.index(Deadline(name)), Deadline(name)) for name, at in timers.items()]
    return [deadline for at, _, deadline in sorted(ready) if at <= now]


def next_due(timers: TimerTable) -> tuple[Deadline, datetime] | None:
    """The timer that falls first, if any."""
    if not timers:
        return None
    name, at = min(timers.items(), key=lambda item: datetime.fromisoformat(item[1]))
    return Deadline(name), datetime.fromisoformat(at)
