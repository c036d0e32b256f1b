"""Waiting before a retry: doubling from ``first`` up to ``cap``, back to ``first`` after a success."""

from __future__ import annotations

import asyncio


class Backoff:
    """Used wherever a failing step is retried forever (a batch, the outbox relay)."""

    def __init__(self, first: float = 0.1, cap: float = 5.0) -> None:
        self._first, self._cap = first, cap
        self.next_delay = first

    async def wait(self) -> None:
        await asyncio.sleep(self.next_delay)
        self.next_delay = min(self.next_delay * 2, self._cap)

    def reset(self) -> None:
        self.next_delay = self._first
