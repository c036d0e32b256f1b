"""One order's view of the run's :class:`~scripts.scenarios.world.World`, fit for a stack that
fails under it (G2): the scenario steps act through it unchanged.

- every id it makes carries the plan's tag (``order-s7n12-3fa9c1``), so a timeline names its plan;
- every command it publishes has an idempotency key fixed by the order's own sequence of
  commands, so a publish retried through a broker restart is the same command, deduplicated;
- a publish, and a card's tokenisation, that fail because the broker or the vault is away are
  tried again until the step's timeout;
- each buyer gets a phone number of their own within the run (random ones collide among
  thousands of buyers, and a number opens one account only);
- every wait lasts the step's timeout (services are killed and restarted meanwhile);
- it notes when each of its order's statuses reached the marketplace (the watcher's arrival
  time): an order is final when its final status is published, not when the driving loop, busy
  with hundreds of orders, next looks at it;
- the buyers' phone reads only the texts appended since it last looked (the SMS file holds one
  text per buyer of the run: reading it whole at every poll of every waiting buyer takes about
  0.1 s a read at 20,000 texts, which stalls the loop that drives every order).
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Self, TypeVar

from aiokafka.errors import KafkaError

from contracts import Command, Message, OrderStatusChanged, RawEnvelope
from scripts.marketplace import Seen
from scripts.onboarding import Onboarding, Phone
from scripts.scenarios.world import PHONE_NUMBERS, World
from services.funding.client import VaultUnavailable

T = TypeVar("T")
PEOPLE_PER_ORDER = 4
"""Phone numbers set aside for each plan index (an order onboards one buyer)."""
FIRST_PAUSE, LONGEST_PAUSE = 0.2, 5.0
"""Seconds between tries of a publish while the broker is away: doubling from the first to the longest."""


async def patiently(act: Callable[[], Awaitable[T]], *, timeout: float, retry_on: tuple[type[Exception], ...]) -> T:
    """``act()``, tried again after ``retry_on`` failures until ``timeout`` seconds have passed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    pause = FIRST_PAUSE
    while True:
        try:
            return await act()
        except retry_on:
            if loop.time() + pause > deadline:
                raise
        # Nothing announces the broker's return: a client notices it by trying again.
        await asyncio.sleep(pause)
        pause = min(pause * 2, LONGEST_PAUSE)


@dataclass
class TailingPhone(Phone):
    """The SMS simulator's file read as it grows: each look parses only the lines appended since
    the last, and keeps every text by the number it went to."""

    _read_to: int = 0
    _texts: dict[str, list[str]] = field(default_factory=dict)

    def texts_to(self, e164: str) -> list[str]:
        self._read_new()
        return list(self._texts.get(e164, ()))

    def _read_new(self) -> None:
        try:
            size = self.outbox.stat().st_size
        except FileNotFoundError:
            return
        if size < self._read_to:  # a new file (a new stack in the same folder): read it from the start
            self._read_to, self._texts = 0, {}
        if size == self._read_to:
            return
        with self.outbox.open("rb") as outbox:
            outbox.seek(self._read_to)
            appended = outbox.read(size - self._read_to)
        whole = appended[: appended.rfind(b"\n") + 1]  # a line still being written is read next time
        self._read_to += len(whole)
        for line in whole.splitlines():
            text = json.loads(line)
            self._texts.setdefault(text["to"], []).append(text["text"])


_PHONES: dict[Path, TailingPhone] = {}
"""One tailing phone per SMS file, shared by every order of the process (their numbers differ)."""


def tailing(phone: Phone) -> TailingPhone:
    return _PHONES.setdefault(phone.outbox, TailingPhone(phone.outbox))


@dataclass
class PatientOnboarding(Onboarding):
    """:class:`~scripts.onboarding.Onboarding` whose publishes outlast a broker restart."""

    @classmethod
    def of(cls, onboarding: Onboarding, timeout: float) -> Self:
        shared = {f.name: getattr(onboarding, f.name) for f in fields(Onboarding)}
        return cls(**shared | {"timeout": timeout, "phone": tailing(onboarding.phone)})

    async def send(self, command: Message, correlation_id: str, key: str) -> RawEnvelope:
        async def publish() -> RawEnvelope:
            return await Onboarding.send(self, command, correlation_id, key)

        return await patiently(publish, timeout=self.timeout, retry_on=(KafkaError,))


@dataclass
class OrderWorld(World):
    """The run's World as one order acts in it: same connections, same clock, same list of ids."""

    tag: str = ""
    """The plan's tag, in every id this view makes."""
    phones: int = 0
    """The first phone number set aside for this order."""
    arrived: dict[tuple[str, str], float] = field(default_factory=dict)
    """When each (order id, status) this view waited for first reached the marketplace (time.time())."""
    _sent: Counter[tuple[str, str]] = field(default_factory=Counter)
    _people: int = 0

    @classmethod
    def of(cls, world: World, *, tag: str, seed: int, index: int, timeout: float) -> Self:
        shared = {f.name: getattr(world, f.name) for f in fields(World)}
        onboarding = PatientOnboarding.of(world.onboarding, timeout)
        shared |= {"timeout": timeout, "onboarding": onboarding, "phone": onboarding.phone}
        # A run's numbers start at a place drawn from its seed and follow the plan indexes: unique
        # within the run, and (most likely) apart from another seed's on a shared stack.
        start = random.Random(f"{seed}:phones").randrange(PHONE_NUMBERS)  # noqa: S311 - not a secret
        return cls(**shared, tag=tag, phones=(start + index * PEOPLE_PER_ORDER) % PHONE_NUMBERS)

    def fresh(self, role: str) -> str:
        new = f"{role}-{self.tag}-{uuid.uuid4().hex[:6]}"
        self.ids.append(new)
        return new

    async def wait_for(
        self,
        predicate: Callable[[Seen], bool],
        what: str,
        timeout: float | None = None,
        *,
        caused_by: uuid.UUID | None = None,
        about: str | None = None,
    ) -> Seen:
        seen = await World.wait_for(self, predicate, what, timeout, caused_by=caused_by, about=about)
        if isinstance(status := seen.message, OrderStatusChanged):
            self.arrived.setdefault((status.order_id, status.status.value), seen.received_at)
        return seen

    def phone_number(self) -> int:
        if self._people >= PEOPLE_PER_ORDER:
            raise RuntimeError(f"an order onboards at most {PEOPLE_PER_ORDER} people (phone numbers set aside)")
        self._people += 1
        return (self.phones + self._people - 1) % PHONE_NUMBERS

    async def send(self, command: Command, *, about: str, key: str | None = None) -> RawEnvelope:
        """Publish with a key fixed by this order's sequence: the n-th ``command.message_type`` about ``about``."""
        if key is None:
            self._sent[command.message_type, about] += 1
            key = f"{command.message_type}:{about}:{self._sent[command.message_type, about]}"
        fixed = key

        async def publish() -> RawEnvelope:
            return await World.send(self, command, about=about, key=fixed)

        return await patiently(publish, timeout=self.timeout, retry_on=(KafkaError,))

    async def tokenised(self, act: Callable[[], Awaitable[T]]) -> T:
        """``act()`` (a step that asks the vault: a card's tokenisation, its book of captures),
        tried again while the vault is away or too busy to answer."""
        return await patiently(act, timeout=self.timeout, retry_on=(VaultUnavailable,))
