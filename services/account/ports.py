"""What the account handlers use besides their aggregates: keys, hashing, the SMS gateway,
the region table. Built once per process from the settings; handlers read it as ``ctx.deps``."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from nacl.secret import SecretBox

from contracts.sealing import b64, unb64
from services.account.domain.accounts import SecurityPolicy
from services.account.domain.credentials import SecretHasher
from services.account.domain.regions import RegionTable, default_regions
from services.account.settings import AccountSettings
from shared.clock import Clock
from shared.consumer import HandlerContext
from shared.sealing import Unsealer, ensure_key_file, load_unsealer


class SmsGateway(Protocol):
    def send(self, phone: str, text: str) -> None: ...


class FileSmsGateway:
    """The SMS gateway simulator: appends each text to a JSON-lines file a test (the "phone") reads.
    The file is the only place a one-time code is ever written."""

    def __init__(self, path: Path, clock: Clock) -> None:
        self.path, self._clock = path, clock
        path.parent.mkdir(parents=True, exist_ok=True)

    def send(self, phone: str, text: str) -> None:
        line = json.dumps({"to": phone, "text": text, "sent_at": self._clock.now().isoformat()})
        with self.path.open("a") as out:
            out.write(line + "\n")


@dataclass(frozen=True, slots=True)
class AccountPorts:
    unsealer: Unsealer
    hasher: SecretHasher
    vault: SecretBox  # encrypts what must be read back (TOTP secrets)
    sms: SmsGateway
    regions: RegionTable
    policy: SecurityPolicy
    automatic_review: bool

    def lock_away(self, secret: str) -> str:
        return b64(bytes(self.vault.encrypt(secret.encode())))

    def take_out(self, boxed: str) -> str:
        return self.vault.decrypt(unb64(boxed)).decode()


def ports(ctx: HandlerContext) -> AccountPorts:
    deps = ctx.deps
    assert isinstance(deps, AccountPorts), "the account service runs with AccountPorts (app.DEFINITION)"
    return deps


def storage_key(path: Path) -> bytes:
    """The service's 32-byte storage key, created (mode 0600) on first start."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(b64(secrets.token_bytes(32)))
        temporary.replace(path)
    return unb64(path.read_text().strip())


def derive(key: bytes, purpose: str) -> bytes:
    """One key per use from the storage key, so a digest never doubles as an encryption key."""
    return hashlib.blake2b(purpose.encode(), key=key, digest_size=32).digest()


def build_ports(settings: AccountSettings, clock: Clock) -> AccountPorts:
    ensure_key_file(settings.sealing_key_file)
    key = storage_key(settings.storage_key_file)
    return AccountPorts(
        unsealer=load_unsealer(settings.sealing_key_file),
        hasher=SecretHasher(
            derive(key, "digests"),
            time_cost=settings.password_hash_time_cost,
            memory_kib=settings.password_hash_memory_kib,
        ),
        vault=SecretBox(derive(key, "vault")),
        sms=FileSmsGateway(settings.sms_outbox, clock),
        regions=default_regions(),
        policy=settings.security_policy,
        automatic_review=settings.automatic_identity_review,
    )
