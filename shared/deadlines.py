"""Durable timers (S4): each aggregate stores when it is next due; a sweeper nudges it then.

A timer is not a separate thing that could fire on its own: it is a column of the aggregate
(``next_due_at``, written in the same transaction as everything else the aggregate decides),
so it survives restarts with the aggregate and can never disagree with it. The sweeper reads
the due ones and publishes a *nudge* (a command naming the aggregate) to the service's own
topic; the service handles it like any message: it loads the aggregate, fires whatever is due
by its clock and stores the result. Firing exactly once comes from that handler: a timer that
fired is gone from the stored state, so a second nudge (the sweeper ran again before the first
was handled, or two instances swept) finds nothing due and changes nothing.

The sweeper keeps no state worth keeping: after a crash it finds the same due rows again. It
re-nudges a row still due after ``renudge_after`` (the first nudge may have been lost before it
reached the broker), and never more often. Time is the service's clock (X8), so moving a test
clock forward makes timers due at the next sweep.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts.envelope import Message
from shared.broker import ProducerPublisher
from shared.clock import Clock
from shared.consumer import outgoing
from shared.db import reading
from shared.logging import RateLimitedLog, get_logger

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Deadlines:
    """Where a service keeps its aggregates' next due time, and the message that nudges one."""

    table: sa.Table
    key: str
    """The aggregate's key column (a single-column key)."""
    due: str
    """The nullable, indexed column holding when the aggregate is next due."""
    nudge: Callable[[str, datetime], Message]
    """The command that asks the service to fire what is due for one aggregate."""


class DeadlineSweeper:
    """Publishes a nudge for every aggregate that is due; see the module docstring."""

    def __init__(
        self,
        engine: AsyncEngine,
        publisher: ProducerPublisher,
        deadlines: Deadlines,
        clock: Clock,
        *,
        source: str,
        every: float = 0.5,
        renudge_after: float = 15.0,
        batch: int = 500,
    ) -> None:
        self.engine = engine
        self.publisher = publisher
        self.deadlines = deadlines
        self.clock = clock
        self.source = source
        self.every = every
        self.renudge_after = renudge_after
        key, due = deadlines.table.c[deadlines.key], deadlines.table.c[deadlines.due]
        self._due = sa.select(key, due).where(due.is_not(None), due <= sa.bindparam("now")).order_by(due).limit(batch)
        self._nudged: dict[tuple[str, datetime], float] = {}  # (key, due) -> when it was nudged (monotonic)
        self._errors = RateLimitedLog(log, interval=10.0)

    async def sweep(self) -> int:
        """Nudge what is due now; the number of nudges sent."""
        async with reading(self.engine) as connection:
            rows = (await connection.execute(self._due, {"now": self.clock.now()})).all()
        started = time.monotonic()
        due_now = {(str(key), due if due.tzinfo else due.replace(tzinfo=UTC)) for key, due in rows}
        self._nudged = {k: at for k, at in self._nudged.items() if k in due_now}  # fired ones are forgotten
        sends = []
        for key, due in due_now:
            if started - self._nudged.get((key, due), -self.renudge_after) < self.renudge_after:
                continue
            message = self.deadlines.nudge(key, due)
            record = outgoing(
                message,
                source=self.source,
                correlation_id=f"{self.source}-deadline:{key}",
                idempotency_key=f"deadline:{key}:{due.isoformat()}",
                occurred_at=self.clock.now(),
            )
            sends.append(await self.publisher.send(record))
            self._nudged[(key, due)] = started
        if sends:
            await asyncio.gather(*sends)
        return len(sends)

    async def run(self) -> None:
        while True:
            try:
                sent = await self.sweep()
                if sent:
                    log.debug("deadlines nudged", count=sent)
            except Exception as error:  # the database or the broker away: the next sweep tries again
                self._errors.warning("sweeping deadlines failed; will retry", error=repr(error))
            await asyncio.sleep(self.every)
