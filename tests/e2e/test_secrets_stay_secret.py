"""A1, A2, A4, A6, X9: no password, one-time code, PIN, TOTP secret, document number, card
number or private signing key appears in any log line, any record on any topic, or any
service's database after a full account and payment flow against the running stack: only in
the places meant to hold them (the user's phone, i.e. the SMS simulator's file; the keyring)."""

from __future__ import annotations

import json
import random
import re
import secrets
import uuid

import pyotp
import pytest

from contracts import (
    AddCard,
    Checkout,
    EnrolTotp,
    FundingSourceAdded,
    FundWallet,
    Money,
    OrderStatus,
    OrderStatusChanged,
    SecurityCheckFailed,
    SecurityMethod,
    SignIn,
    TotpEnrolled,
    VerificationLevel,
)
from contracts.sealing import Purpose
from scripts.marketplace import EventWatcher, Marketplace
from scripts.onboarding import MARKETPLACE_ID, Onboarding, Person, e164
from scripts.secrets_scan import all_records, files, findings
from scripts.stack import ServiceProcesses
from services.funding.client import VaultClient
from shared.signing import PRINCIPALS

pytestmark = [pytest.mark.e2e, pytest.mark.kafka, pytest.mark.slow]


def luhn_card(prefix: str = "4", length: int = 16) -> str:
    """A random card number that passes the Luhn check."""
    digits = [int(d) for d in prefix] + [random.randrange(10) for _ in range(length - len(prefix) - 1)]
    total = 0
    for i, digit in enumerate(reversed(digits)):
        doubled = digit * 2 if i % 2 == 0 else digit
        total += doubled - 9 if doubled > 9 else doubled
    return "".join(map(str, digits)) + str((10 - total % 10) % 10)


def pin() -> str:
    while True:
        value = f"{secrets.randbelow(10**6):06d}"
        if len(set(value)) > 2 and value not in "01234567890" and value not in "09876543210":
            return value


async def test_a6_x9_secrets_never_reach_logs_topics_or_databases(
    stack: ServiceProcesses, market: Marketplace, watcher: EventWatcher, onboarding: Onboarding
) -> None:
    n = uuid.uuid4().int % 10**8
    person = Person(
        account_id=f"secret-keeper-{n:08d}",
        phone=f"+4474{n:08d}",
        full_name="Mei Chen",
        password=f"Pw-{secrets.token_urlsafe(12)}-9z!",
        pin=pin(),
        document_number=f"P{secrets.randbelow(10**8):08d}",
    )
    card_number, totp_secret = luhn_card(), pyotp.random_base32()
    key = stack.sealing_key()

    await onboarding.register(person)
    assert (await onboarding.verify_identity(person, VerificationLevel.L1)).message.level is VerificationLevel.L1  # type: ignore[attr-defined]
    await onboarding.grant(person)
    await onboarding.set_pin(person)
    totp = pyotp.TOTP(totp_secret)
    await onboarding.send(
        EnrolTotp(
            account_id=person.account_id,
            secret=key.seal(totp_secret, purpose=Purpose.totp_secret(person.account_id)),
            code=key.seal(totp.now(), purpose=Purpose.totp_code(person.account_id)),
            password=key.seal(person.password, purpose=Purpose.password(person.account_id)),
        ),
        person.account_id,
        f"totp-{n}",
    )
    await onboarding.answer(person.account_id, TotpEnrolled)
    async with VaultClient(stack.vault_url) as vault:
        card = await vault.tokenize_card(card_number, 12, 2031, "123")
    await onboarding.send(
        AddCard(
            account_id=person.account_id,
            source_id="main-card",
            token=card.token,
            brand=card.brand,
            last4=card.last4,
            expiry_month=12,
            expiry_year=2031,
        ),
        person.account_id,
        f"card-{n}",
    )
    await onboarding.answer(person.account_id, FundingSourceAdded)
    await onboarding.send(
        SignIn(
            account_id=person.account_id,
            password=key.seal("not-the-password-1A!", purpose=Purpose.password(person.account_id)),
            country="US",
        ),
        person.account_id,
        f"signin-{n}",
    )
    await onboarding.answer(person.account_id, SecurityCheckFailed)
    # A payment above the region's security threshold, confirmed with the PIN.
    await market.publish(
        FundWallet(account_id=person.account_id, amount=Money(amount_minor=90_000, currency="USD")),
        correlation_id=person.account_id,
        idempotency_key=f"fund-{n}",
    )
    order_id = f"order-secret-{n}"
    await market.publish(
        Checkout(
            order_id=order_id,
            buyer_id=person.account_id,
            seller_id=f"seller-{n}",
            amount=Money(amount_minor=50_000, currency="USD"),
            marketplace_id=MARKETPLACE_ID,
            security_method=SecurityMethod.PIN,
            security_proof=key.seal(person.pin, purpose=Purpose.payment(order_id)),
        ),
        correlation_id=order_id,
        idempotency_key=f"checkout-{n}",
    )
    reached = await watcher.wait_for(
        lambda s: (
            isinstance(s.message, OrderStatusChanged)
            and s.message.order_id == order_id
            and s.message.status in (OrderStatus.IN_ESCROW, OrderStatus.CANCELLED)
        ),
        timeout=60,
    )
    assert reached.message.status is OrderStatus.IN_ESCROW, reached.message  # type: ignore[attr-defined]

    texts = onboarding.phone.texts_to(e164(person.phone))
    phone_code = re.search(r"\b(\d{6})\b", texts[-1])
    assert phone_code is not None
    used = {
        "password": person.password,
        "PIN": person.pin,
        "phone code": phone_code.group(1),
        "TOTP secret": totp_secret,
        "document number": person.document_number,
        "card number": card_number,
    }
    # The scanner can find what it looks for: the phone (the SMS file) holds the code.
    assert findings(used, files([stack.sms_outbox])) == [f"phone code in {stack.sms_outbox}"]
    # Every principal's receive secrets and send keys (X9): only its keyring file holds them.
    keyring = {p: stack.signing_dir / f"{p}.json" for p in PRINCIPALS}
    signing_keys: dict[str, str] = {}
    for p, path in keyring.items():
        held = json.loads(path.read_text())
        for k in held["receive_secrets"]:
            signing_keys[f"{p}'s receive secret {k['key_id']}"] = str(k["secret"])
        for consumer, keys in held["send_keys"].items():
            for k in keys:
                signing_keys[f"{p}'s send key {k['key_id']} for {consumer}"] = str(k["key"])
    assert len(findings(signing_keys, files(keyring.values()))) == len(signing_keys)
    used |= signing_keys

    everywhere = [
        *await all_records(stack.bootstrap_servers),
        *files(stack.log_dir.glob("*.log")),
        *files(stack.state_dir.glob("*.db")),
        *files(stack.state_dir.glob("*.db-wal")),
    ]
    assert findings(used, everywhere) == []
