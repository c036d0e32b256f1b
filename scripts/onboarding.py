"""A buyer's or seller's first steps, as the marketplace's app gateway takes them: register,
prove the phone with the code the SMS simulator received, verify an identity, bind the wallet
to the marketplace. Used by the demo, the scenarios, the tests and the benchmark.

It uses contracts, the SMS simulator's file (which stands for the user's phone) and the stack's
clock (``shared.clock``), so a grant's expiry is counted in the time the services see.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import ssl
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from contracts import (
    AccountStatus,
    AccountStatusChanged,
    BindingScope,
    CommandRejected,
    DocumentType,
    GrantMarketplaceAccess,
    IdentityRejected,
    IdentityVerified,
    MarketplaceAccessGranted,
    Message,
    PaymentPinSet,
    PhoneCodeSent,
    PhoneVerificationFailed,
    RawEnvelope,
    RegisterAccount,
    ResendPhoneCode,
    SealingKey,
    SetPaymentPin,
    SubmitIdentity,
    VerificationLevel,
    VerifyPhone,
)
from contracts.sealing import Purpose
from scripts.marketplace import EventWatcher, Marketplace, Seen
from shared.clock import SYSTEM_CLOCK, Clock

RESEND_AFTER = 20.0
"""Seconds a person waits for a texted code before asking for another."""
_TLS = ssl.create_default_context()
"""One TLS context for every read client: httpx makes a new one per client otherwise, loading
the CA bundle each time (a sixth of a chaos run's driving CPU, for plain-HTTP read APIs)."""

MARKETPLACE_ID = "marketplace-1"
"""The marketplace account the demo, scenarios and tests charge as."""


class CommandRefusedError(Exception):
    """The account service refused a step (the CommandRejected's code and reason say why)."""


_CODE = re.compile(r"\b(\d{6})\b")


@dataclass(frozen=True, slots=True)
class Person:
    """Someone who will hold an account: every secret they know is here, and only here."""

    account_id: str
    phone: str
    full_name: str
    country: str = "US"
    language: str = "en"
    password: str = "Correct-Horse-42"  # noqa: S105 - a made-up person's, for the demo and tests
    pin: str = "284915"
    birth_date: dt.date = dt.date(1990, 5, 17)
    document_number: str = "P1234567"
    email: str | None = None
    """Where their notifications go by email (N2); none: the in-app inbox only."""

    @classmethod
    def numbered(
        cls,
        account_id: str,
        n: int,
        *,
        country: str = "US",
        full_name: str | None = None,
        language: str = "en",
        email: str | None = None,
    ) -> Person:
        """A person with a UK mobile number of their own for each ``n`` below 10**8, reading
        their notifications in ``language`` (``en``, ``zh-CN``) and by email at ``email`` if given."""
        return cls(
            account_id, f"+4474{n:08d}", full_name or f"Test Person {n}", country, language=language, email=email
        )


@dataclass
class Phone:
    """The SMS gateway simulator's file, read the way a person reads their texts."""

    outbox: Path
    _seen: dict[str, int] = field(default_factory=dict)

    def texts_to(self, e164: str) -> list[str]:
        if not self.outbox.exists():
            return []
        lines = self.outbox.read_text().splitlines()
        return [m["text"] for m in map(json.loads, lines) if m["to"] == e164]

    async def next_code(self, e164: str, timeout: float = 30.0) -> str:
        """The code in the first text to ``e164`` not read yet (the file is polled: it is a phone)."""
        deadline = time.monotonic() + timeout
        while True:
            texts = self.texts_to(e164)
            read = self._seen.get(e164, 0)
            if len(texts) > read:
                self._seen[e164] = len(texts)
                match = _CODE.search(texts[-1])
                if match:
                    return match.group(1)
            if time.monotonic() > deadline:
                raise TimeoutError(f"no text reached {e164} within {timeout:.0f} s")
            await asyncio.sleep(0.05)


def e164(raw: str) -> str:
    return "+" + re.sub(r"\D", "", raw)


@dataclass
class Onboarding:
    """Takes people through the account service, waiting for each answer."""

    market: Marketplace
    watcher: EventWatcher
    phone: Phone
    key: SealingKey
    marketplace_id: str = MARKETPLACE_ID
    timeout: float = 30.0
    clock: Clock = SYSTEM_CLOCK
    payment_url: str | None = None
    """The payment service's read API: given, :meth:`buyer` returns only once the payment
    service's copy of the buyer's limits has the level (it follows the account's events)."""
    _last_sent: dict[str, uuid.UUID] = field(default_factory=dict)

    async def send(self, command: Message, correlation_id: str, key: str) -> RawEnvelope:
        """Publish an account command; :meth:`answer` then waits for what *this* command caused."""
        sent = await self.market.publish(command, correlation_id=correlation_id, idempotency_key=key)  # type: ignore[arg-type]
        account_id = getattr(command, "account_id", None)
        if isinstance(account_id, str):
            self._last_sent[account_id] = sent.message_id
        return sent

    async def answer(self, account_id: str, *kinds: type[Message]) -> Seen:
        """The first of ``kinds`` (or a rejection) about ``account_id`` caused by the last command
        sent for it (not an earlier answer to an earlier command); a rejection raises."""
        cause = self._last_sent.get(account_id)

        def about(seen: Seen) -> bool:
            m = seen.message
            subject = getattr(m, "account_id", None) or getattr(m, "subject_id", None)
            caused = cause is None or seen.envelope.causation_id == cause
            return subject == account_id and caused and isinstance(m, (*kinds, CommandRejected))

        seen = await self.watcher.wait_for(about, timeout=self.timeout, caused_by=cause)
        if isinstance(seen.message, CommandRejected):
            raise CommandRefusedError(
                f"{seen.message.rejected_type} refused: {seen.message.code}: {seen.message.reason}"
            )
        return seen

    async def register(self, person: Person) -> None:
        """Register and prove the phone: the account is active when this returns."""
        sealed = self.key.seal(person.password, purpose=Purpose.password(person.account_id))
        register = RegisterAccount(
            account_id=person.account_id,
            phone=person.phone,
            full_name=person.full_name,
            country=person.country,
            language=person.language,
            password=sealed,
            email=person.email,
        )
        await self.send(register, person.account_id, f"register:{person.account_id}")
        await self.answer(person.account_id, PhoneCodeSent)
        await self.verify_phone(person)

    async def verify_phone(self, person: Person) -> None:
        code = await self._texted_code(person)
        verify = VerifyPhone(
            account_id=person.account_id, code=self.key.seal(code, purpose=Purpose.phone_code(person.account_id))
        )
        await self.send(verify, person.account_id, f"verify-phone:{person.account_id}:{time.time_ns()}")
        changed = await self.answer(person.account_id, AccountStatusChanged, PhoneVerificationFailed)
        if not (isinstance(changed.message, AccountStatusChanged) and changed.message.status is AccountStatus.ACTIVE):
            raise CommandRefusedError(f"phone not verified: {changed.message}")

    async def _texted_code(self, person: Person) -> str:
        """The code texted to the person's phone. When none comes within :data:`RESEND_AFTER`
        seconds, ask for a new one, as a person taps "send again": the account service texts a
        code at most once, after the commit that stores its digest (the code itself is never
        stored), so a service stopped between the two never sends that text (seen once in a
        10,000-order chaos run)."""
        number = e164(person.phone)
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                return await self.phone.next_code(number, min(RESEND_AFTER, max(0.0, deadline - time.monotonic())))
            except TimeoutError:
                if time.monotonic() >= deadline:
                    raise
            resend = ResendPhoneCode(account_id=person.account_id)
            await self.send(resend, person.account_id, f"resend-code:{person.account_id}:{time.time_ns()}")
            await self.answer(person.account_id, PhoneCodeSent)

    async def verify_identity(self, person: Person, level: VerificationLevel, address: str | None = None) -> Seen:
        """Submit an identity for ``level``; returns IdentityVerified or IdentityRejected."""
        submit = SubmitIdentity(
            account_id=person.account_id,
            level=level,
            legal_name=person.full_name,
            document_type=DocumentType.PASSPORT,
            document_number=self.key.seal(person.document_number, purpose=Purpose.document(person.account_id)),
            birth_date=person.birth_date,
            country=person.country,
            address=address,
        )
        await self.send(submit, person.account_id, f"identity:{person.account_id}:{level}:{time.time_ns()}")
        return await self.answer(person.account_id, IdentityVerified, IdentityRejected)

    async def grant(
        self, person: Person, *, days: int = 365, legal_name: str | None = None, country: str | None = None
    ) -> Seen:
        grant = GrantMarketplaceAccess(
            account_id=person.account_id,
            marketplace_id=self.marketplace_id,
            scopes=[BindingScope.PAY, BindingScope.REFUND],
            expires_at=self.clock.now() + dt.timedelta(days=days),
            profile_legal_name=legal_name or person.full_name,
            profile_country=country or person.country,
            password=self.key.seal(person.password, purpose=Purpose.password(person.account_id)),
        )
        await self.send(grant, person.account_id, f"grant:{person.account_id}:{time.time_ns()}")
        return await self.answer(person.account_id, MarketplaceAccessGranted)

    async def set_pin(self, person: Person) -> None:
        command = SetPaymentPin(
            account_id=person.account_id,
            pin=self.key.seal(person.pin, purpose=Purpose.pin(person.account_id)),
            password=self.key.seal(person.password, purpose=Purpose.password(person.account_id)),
        )
        await self.send(command, person.account_id, f"pin:{person.account_id}:{time.time_ns()}")
        await self.answer(person.account_id, PaymentPinSet)

    async def buyer(
        self, person: Person, level: VerificationLevel = VerificationLevel.L1, *, until_limits: bool = True
    ) -> None:
        """Registered, phone proven, identity verified at ``level`` (L1: the limits of everyday
        shopping; L0 pays at most the region's smallest), wallet bound to the marketplace; with
        ``until_limits`` (and a ``payment_url``), returns once the payment service applies them."""
        await self.register(person)
        if level is not VerificationLevel.L0:
            verified = await self.verify_identity(person, VerificationLevel.L1)
            if not isinstance(verified.message, IdentityVerified):
                raise CommandRefusedError(f"identity of {person.account_id} not verified: {verified.message}")
        await self.grant(person)
        if until_limits:
            await self.limits_in_force([person], level)

    async def limits_in_force(self, people: Sequence[Person], level: VerificationLevel) -> None:
        """Wait until the payment service counts each person's payments against ``level``'s limits
        (nothing to wait for without a ``payment_url``).

        The account service announces a level; the payment service applies it when it reads
        that event, which under load may come after the marketplace's next checkout. One client
        asks for one person at a time: a read API under load answers slowly, not wrongly."""
        if self.payment_url is None:
            return
        deadline = time.monotonic() + self.timeout
        async with httpx.AsyncClient(base_url=self.payment_url, timeout=5, verify=_TLS) as client:
            for person in people:
                while not await self._level_applied(client, person, level):
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"the payment service has not applied {level} for {person.account_id}")
                    await asyncio.sleep(0.05)  # a read copy announces nothing: polled, as a reader would

    @staticmethod
    async def _level_applied(client: httpx.AsyncClient, person: Person, level: VerificationLevel) -> bool:
        try:
            response = await client.get("/limits", params={"account_id": person.account_id})
        except httpx.TransportError:  # busy: ask again
            return False
        return response.status_code == 200 and response.json()["level"] >= level.value

    async def many(self, people: Sequence[Person], level: VerificationLevel = VerificationLevel.L1) -> None:
        """Onboard many buyers at once (the benchmark's accounts), then wait for their limits."""
        await asyncio.gather(*(self.buyer(p, level, until_limits=False) for p in people))
        await self.limits_in_force(people, level)
