"""Wait for state that has no event to await (rows another process writes)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(probe: Callable[[], Awaitable[T]], until: Callable[[T], bool], timeout: float = 20.0) -> T:
    """Call ``probe`` until ``until(result)`` holds; return the last result either way."""
    deadline = time.monotonic() + timeout
    result = await probe()
    while not until(result) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        result = await probe()
    return result
