"""Waiting before a retry: exponential from ``first`` up to ``cap``, with full jitter.

The one backoff of the project: the consumer's system-fault retries and the outbox relay
both use it. Jitter keeps the services that lost the same database or broker from
retrying in lockstep.
"""

from __future__ import annotations

import asyncio
import random


class Backoff:
    """Delays for a step retried until it succeeds; ``reset`` after a success."""

    def __init__(self, first: float = 0.05, cap: float = 5.0, *, rng: random.Random | None = None) -> None:
        if not 0 < first <= cap:
            raise ValueError("backoff needs 0 < first <= cap")
        self._first, self._cap = first, cap
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self.attempt = 0

    @property
    def ceiling(self) -> float:
        """The largest delay the next wait may take."""
        return float(min(self._cap, self._first * 2.0**self.attempt))

    def next_delay(self) -> float:
        """The next delay: uniform in [ceiling / 2, ceiling] (jittered, never zero)."""
        ceiling = self.ceiling
        self.attempt += 1
        return ceiling / 2 + self._rng.random() * ceiling / 2

    async def wait(self) -> float:
        delay = self.next_delay()
        await asyncio.sleep(delay)
        return delay

    def reset(self) -> None:
        self.attempt = 0
