"""The account service driven in-process (no broker): its real handlers, ports and database,
and the records a gateway would send to register, verify and bind an account."""

from __future__ import annotations

import datetime as dt
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts import (
    BindingScope,
    GrantMarketplaceAccess,
    Message,
    RegisterAccount,
    SetPaymentPin,
    VerifyPhone,
    decode_message,
)
from contracts.sealing import Purpose, SealingKey
from services.account.app import DEFINITION as ACCOUNT
from services.account.ports import AccountPorts, build_ports
from services.account.settings import AccountSettings
from shared.clock import ManualClock
from shared.consumer import BatchConsumer
from shared.outbox import StoredRecord
from shared.tables import outbox
from tests.support.records import Record, record_of

PASSWORD = "Correct-Horse-42"
PIN = "284915"
MARKETPLACE = "marketplace-1"


def account_settings(state: Path, **overrides: Any) -> AccountSettings:
    """Settings whose keys and SMS file live in ``state``, with argon2 cheap enough for tests."""
    values: dict[str, Any] = {
        "database_url": "sqlite+aiosqlite:///unused.db",
        "sealing_key_file": state / "keys" / "sealing.json",
        "storage_key_file": state / "keys" / "storage.key",
        "sms_outbox": state / "sms.jsonl",
        "password_hash_time_cost": 1,
        "password_hash_memory_kib": 1024,
    }
    return AccountSettings(**(values | overrides))


def account_consumer(
    engine: AsyncEngine, ports: AccountPorts, clock: ManualClock, handed_over: list[StoredRecord] | None = None
) -> BatchConsumer:
    return BatchConsumer(
        name="account",
        engine=engine,
        handlers=ACCOUNT.handlers,
        rejections_topic=ACCOUNT.rejections_topic,
        hand_over=(handed_over if handed_over is not None else []).extend,
        clock=clock,
        dependencies=ports,
    )


@dataclass
class AccountDriver:
    """Sends commands to the account service's consumer and reads what it emitted."""

    engine: AsyncEngine
    ports: AccountPorts
    clock: ManualClock
    _read: int = field(default=0)

    @classmethod
    def create(cls, engine: AsyncEngine, state: Path, clock: ManualClock, **settings: Any) -> AccountDriver:
        return cls(engine, build_ports(account_settings(state, **settings), clock), clock)

    @property
    def key(self) -> SealingKey:
        return self.ports.unsealer.public_key

    def seal(self, secret: str, purpose: str) -> str:
        return self.key.seal(secret, purpose=purpose)

    async def send(self, *messages: Message | Record, key: str | None = None) -> list[Message]:
        """Consume the messages as one batch; return what it emitted (not dead letters)."""
        records = [m if isinstance(m, Record) else record_of(m, idempotency_key=key) for m in messages]
        await account_consumer(self.engine, self.ports, self.clock).consume(records)
        return await self.emitted_since_last()

    async def emitted_since_last(self) -> list[Message]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(sa.select(outbox).where(outbox.c.id > self._read).order_by(outbox.c.id))).all()
        if rows:
            self._read = rows[-1].id
        messages = []
        for row in rows:
            if row.topic.endswith("dead-letter"):
                continue
            messages.append(decode_message(row.value).payload)
        return messages

    def register(
        self, account_id: str, *, country: str = "US", phone: str | None = None, name: str = "Ana Li"
    ) -> RegisterAccount:
        return RegisterAccount(
            account_id=account_id,
            phone=phone or f"+1415555{zlib.crc32(account_id.encode()) % 10000:04d}",
            full_name=name,
            country=country,
            password=self.seal(PASSWORD, Purpose.password(account_id)),
        )

    def verify(self, account_id: str, code: str | None = None, sequence: int = 1) -> VerifyPhone:
        """The code the SMS carried (derivable here because the driver holds the service's key)."""
        code = code or self.ports.hasher.phone_code(account_id, sequence)
        return VerifyPhone(account_id=account_id, code=self.seal(code, Purpose.phone_code(account_id)))

    def grant(
        self,
        account_id: str,
        *,
        name: str = "Ana Li",
        country: str = "US",
        days: int = 30,
        scopes: tuple[BindingScope, ...] = (BindingScope.PAY,),
        password: str = PASSWORD,
    ) -> GrantMarketplaceAccess:
        return GrantMarketplaceAccess(
            account_id=account_id,
            marketplace_id=MARKETPLACE,
            scopes=list(scopes),
            expires_at=self.clock.now() + dt.timedelta(days=days),
            profile_legal_name=name,
            profile_country=country,
            password=self.seal(password, Purpose.password(account_id)),
        )

    def set_pin(self, account_id: str, pin: str = PIN) -> SetPaymentPin:
        return SetPaymentPin(
            account_id=account_id,
            pin=self.seal(pin, Purpose.pin(account_id)),
            password=self.seal(PASSWORD, Purpose.password(account_id)),
        )

    async def onboard(self, account_id: str, *, country: str = "US", name: str = "Ana Li") -> list[Message]:
        """Registered, phone verified and bound to MARKETPLACE, in one batch."""
        return await self.send(
            self.register(account_id, country=country, name=name),
            self.verify(account_id),
            self.grant(account_id, name=name, country=country),
        )
