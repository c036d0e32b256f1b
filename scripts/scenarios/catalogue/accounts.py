"""Accounts: registration with the texted code, real-name verification by level, and regions."""

from __future__ import annotations

from contracts import (
    AccountRegistered,
    AccountStatus,
    AccountStatusChanged,
    CommandRejected,
    IdentityVerified,
    Limits,
    PhoneCodeSent,
    Purpose,
    RegisterAccount,
    VerificationLevel,
    VerifyPhone,
)
from scripts.onboarding import Person, e164
from scripts.scenarios.outcome import expect
from scripts.scenarios.registry import scenario
from scripts.scenarios.steps import sealed_password
from scripts.scenarios.world import World

ENHANCED_REGION = ("BR", "BRL")
"""A region where L2 (address proof) is a real step up: its L2 limits exceed L1's (regions.toml)."""


def registration(world: World, person: Person) -> RegisterAccount:
    return RegisterAccount(
        account_id=person.account_id,
        phone=person.phone,
        full_name=person.full_name,
        country=person.country,
        language=person.language,
        password=sealed_password(world, person),
    )


@scenario(
    "register-and-verify",
    "Register with the texted code, then verify the identity at L1 and, with an address, at L2 (higher limits)",
    features=("A1", "A2", "A3"),
)
async def register_and_verify(world: World) -> None:
    """A person in Brazil (a region that requires enhanced verification) registers: the account
    opens pending with a BRL wallet and a one-time code is texted; the code from the SMS file,
    sealed, makes it active. An identity submitted for L1 is verified with L1 limits in BRL;
    one for L2 with a proof-of-address line is verified with limits above L1's."""
    country, currency = ENHANCED_REGION
    person = world.person("holder", country=country, full_name="Bruna Costa")
    world.say(f"{person.account_id} registers in {country} with {person.phone}")
    sent = await world.send(registration(world, person), about=person.account_id)
    registered = await world.reply(sent, AccountRegistered)
    expect(registered.currency == currency, f"a wallet in {currency}", got=registered.currency)
    expect(registered.enhanced_verification_required, f"{country} to require enhanced verification (L2)")
    await world.event(PhoneCodeSent, account_id=person.account_id)
    code = await world.phone.next_code(e164(person.phone), world.timeout)
    world.say("the phone receives a six-digit code; the app seals it and sends VerifyPhone")
    sealed = world.key.seal(code, purpose=Purpose.phone_code(person.account_id))
    await world.send(VerifyPhone(account_id=person.account_id, code=sealed), about=person.account_id)
    active = await world.event(AccountStatusChanged, account_id=person.account_id, status=AccountStatus.ACTIVE)
    expect(active.previous_status is AccountStatus.PENDING, "pending → active", got=active.previous_status)

    l1 = await verified(world, person, VerificationLevel.L1)
    expect(l1.limits.per_payment.currency == currency, f"L1 limits in {currency}", got=l1.limits.per_payment)
    l2 = await verified(world, person, VerificationLevel.L2, address="Rua Augusta 1500, São Paulo, 01304-001")
    expect(higher(l2.limits, l1.limits), "L2 limits above L1's in this region", got=f"L1 {l1.limits}, L2 {l2.limits}")


async def verified(
    world: World, person: Person, level: VerificationLevel, address: str | None = None
) -> IdentityVerified:
    """Submit the person's identity for ``level``; it must be verified at that level."""
    world.say(f"{person.account_id} submits a passport for {level}" + (" with a proof of address" if address else ""))
    answer = (await world.onboarding.verify_identity(person, level, address)).message
    expect(isinstance(answer, IdentityVerified), f"the identity verified at {level}", got=answer)
    assert isinstance(answer, IdentityVerified)
    expect(answer.level is level, f"level {level}", got=answer.level)
    world.say(f"verified at {level}: per payment {answer.limits.per_payment}, monthly {answer.limits.monthly}")
    return answer


def higher(upper: Limits, lower: Limits) -> bool:
    """No limit lower, and at least one above."""
    pairs = [(upper.per_payment, lower.per_payment), (upper.daily, lower.daily), (upper.monthly, lower.monthly)]
    amounts = [(u.amount_minor, v.amount_minor) for u, v in pairs]
    return all(u >= v for u, v in amounts) and any(u > v for u, v in amounts)


@scenario(
    "unsupported-region",
    "Registering in a country TradeGuard does not serve (KP) is refused with unsupported_region naming it",
    features=("A1", "A3"),
)
async def unsupported_region(world: World) -> None:
    """A person in North Korea tries to register: the account service refuses the command with
    code unsupported_region and a reason naming KP, and no account is opened."""
    person = world.person("holder", country="KP")
    world.say(f"{person.account_id} tries to register in KP")
    sent = await world.send(registration(world, person), about=person.account_id)
    answer = await world.answer(sent, AccountRegistered)
    expect(isinstance(answer, CommandRejected), "the registration to be refused", got=type(answer).__name__)
    assert isinstance(answer, CommandRejected)
    expect(answer.code == "unsupported_region", "code unsupported_region", got=answer.code)
    expect("KP" in answer.reason, "a reason naming KP", got=answer.reason)
    expect(not world.seen(AccountRegistered, account_id=person.account_id), "no account opened")
    world.say(f"refused: {answer.reason}")
