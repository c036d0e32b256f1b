"""What a scenario acts with: the marketplace, the watcher, the buyer's and seller's phones and
onboarding, the funding network's vault, the sealing key, the stack's clock, its mail server
(the users' mailboxes) and its services' HTTP read APIs."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from rich.console import Console

from contracts import Command, CommandRejected, Message, RawEnvelope, SealingKey
from contracts.catalogue import PRODUCERS
from scripts.marketplace import NAMING_FIELDS, EventWatcher, Marketplace, Seen
from scripts.onboarding import Onboarding, Person, Phone
from scripts.scenarios.handle import StackClock, StackMailbox, read_endpoint
from scripts.scenarios.outcome import ScenarioFailed
from scripts.scenarios.timeline import about
from scripts.stack import StackLayout
from services.funding.client import VaultClient

M = TypeVar("M", bound=Message)
PHONE_NUMBERS = 10**8  # Person.numbered gives each n below this a phone number of its own


@dataclass
class World:
    """The actors of one scenario run, and the ids the scenario made (its timeline is about them).

    Long-lived connections (``market``, ``watcher``, ``vault``) are shared by the scenarios of
    one run; every scenario makes fresh ids with :meth:`fresh`, so it can run many times
    against the same stack, in any order.
    """

    market: Marketplace
    watcher: EventWatcher
    onboarding: Onboarding
    vault: VaultClient
    phone: Phone
    key: SealingKey
    clock: StackClock
    console: Console
    timeout: float = 30.0
    ids: list[str] = field(default_factory=list)
    layout: StackLayout | None = None
    """Where the stack keeps what it shares with clients; by default the state folder holding
    the phone's file (the SMS simulator's file lies at the top of it)."""

    # ------------------------------------------------------------------ the stack

    @property
    def stack(self) -> StackLayout:
        return self.layout or StackLayout.of(self.phone.outbox.parent)

    @property
    def mailbox(self) -> StackMailbox:
        """The stack's mail server: the users' mail, and the switch that takes the server down."""
        return StackMailbox.of(self.stack)

    def endpoint(self, service: str) -> str:
        """Base URL of ``service``'s HTTP read API (``notification``: the in-app inbox)."""
        return read_endpoint(self.stack, service)

    # ------------------------------------------------------------------ ids and people

    def fresh(self, role: str) -> str:
        """A new id for ``role`` (``buyer-1f3a...``), remembered for the timeline."""
        new = f"{role}-{uuid.uuid4().hex[:12]}"
        self.ids.append(new)
        return new

    def person(
        self,
        role: str,
        *,
        country: str = "US",
        full_name: str | None = None,
        language: str = "en",
        with_email: bool = False,
    ) -> Person:
        """Someone new, with an account id and phone number of their own, reading notifications in
        ``language``; ``with_email``: with an address of their own too (``<account id>@example.com``)."""
        account_id = self.fresh(role)
        n = self.phone_number()
        return Person.numbered(
            account_id,
            n,
            country=country,
            full_name=full_name or f"{role.title()} {n}",
            language=language,
            email=f"{account_id}@example.com" if with_email else None,
        )

    def phone_number(self) -> int:
        """The number (below :data:`PHONE_NUMBERS`) :meth:`person` gives the next person: a random one."""
        return uuid.uuid4().int % PHONE_NUMBERS

    def say(self, text: str) -> None:
        """Narrate a step (the scenario reads as a story while it runs)."""
        self.console.print(f"  [cyan]→[/] {text}")

    # ------------------------------------------------------------------ acting

    async def send(self, command: Command, *, about: str, key: str | None = None) -> RawEnvelope:
        """Publish ``command`` in the flow of ``about`` (an account or order id) with idempotency key
        ``key`` (default: a fresh one), signed as the marketplace or, for an operator's command, as
        the operators' tools (X9)."""
        key = key or f"{command.message_type}:{about}:{uuid.uuid4().hex}"
        owners = PRODUCERS[command.message_type]
        client = self.market if self.market.principal in owners else self.market.signing_as(owners[0])
        return await client.publish(command, correlation_id=about, idempotency_key=key)

    # ------------------------------------------------------------------ watching

    async def wait_for(
        self,
        predicate: Callable[[Seen], bool],
        what: str,
        timeout: float | None = None,
        *,
        caused_by: uuid.UUID | None = None,
        about: str | None = None,
    ) -> Seen:
        """The first message that matches; :class:`ScenarioFailed` saying ``what`` if none comes
        in time. ``caused_by``, ``about``: what every match has (the watcher searches less)."""
        limit = self.timeout if timeout is None else timeout
        try:
            return await self.watcher.wait_for(predicate, timeout=limit, caused_by=caused_by, about=about)
        except TimeoutError:
            raise ScenarioFailed(f"timed out after {limit:.0f} s waiting for {what}") from None

    async def event(
        self, kind: type[M], /, *, caused_by: RawEnvelope | None = None, timeout: float | None = None, **fields: object
    ) -> M:
        """The first ``kind`` message whose ``fields`` have the given values (and that ``caused_by`` caused)."""

        def matches(seen: Seen) -> bool:
            cause = caused_by is None or seen.envelope.causation_id == caused_by.message_id
            return cause and isinstance(seen.message, kind) and _has(seen.message, fields)

        described = ", ".join(f"{k}={v}" for k, v in fields.items())
        because = f" answering {caused_by.type}" if caused_by else ""
        cause = caused_by.message_id if caused_by else None
        named = next((v for k in NAMING_FIELDS if isinstance(v := fields.get(k), str)), None)
        what = f"{kind.__name__}({described}){because}"
        seen = await self.wait_for(matches, what, timeout, caused_by=cause, about=named)
        assert isinstance(seen.message, kind)
        return seen.message

    async def answer(self, sent: RawEnvelope, *kinds: type[Message]) -> Message:
        """The first of ``kinds``, or a CommandRejected, that ``sent`` caused."""
        wanted: tuple[type[Message], ...] = (*kinds, CommandRejected)

        def caused(seen: Seen) -> bool:
            return seen.envelope.causation_id == sent.message_id and isinstance(seen.message, wanted)

        names = " or ".join(k.__name__ for k in wanted)
        what = f"{names} answering {sent.type} {sent.message_id}"
        return (await self.wait_for(caused, what, caused_by=sent.message_id)).message

    async def reply(self, sent: RawEnvelope, kind: type[M]) -> M:
        """The ``kind`` message ``sent`` caused; :class:`ScenarioFailed` if the command was refused."""
        message = await self.answer(sent, kind)
        if isinstance(message, CommandRejected):
            raise ScenarioFailed(f"expected {sent.type} to be accepted; refused: {message.code}: {message.reason}")
        assert isinstance(message, kind)
        return message

    def seen(self, kind: type[M], /, **fields: object) -> list[M]:
        """Every ``kind`` message seen so far whose ``fields`` have the given values."""
        return [m for s in self.watcher.seen if isinstance(m := s.message, kind) and _has(m, fields)]

    def timeline(self) -> list[Seen]:
        """Every message seen about this scenario's ids, in the order it arrived."""
        return about(self.watcher.seen, set(self.ids))


def _has(message: Message, fields: dict[str, object]) -> bool:
    return all(getattr(message, k, None) == v for k, v in fields.items())
