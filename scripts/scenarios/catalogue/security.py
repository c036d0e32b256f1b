"""Security (A6): repeated failed checks lock the account; an operator unlocks it after review."""

from __future__ import annotations

from contracts import (
    AccountStatus,
    AccountStatusChanged,
    CommandRejected,
    SecurityCheckFailed,
    SignIn,
    SuspiciousActivity,
    SuspiciousActivityDetected,
    UnlockAccount,
)
from scripts.onboarding import Person
from scripts.scenarios.outcome import ScenarioFailed, expect
from scripts.scenarios.registry import scenario
from scripts.scenarios.steps import (
    checkout,
    expect_cancelled,
    expect_in_escrow,
    onboard_buyer,
    sealed_password,
    top_up,
    usd,
)
from scripts.scenarios.world import World

WRONG_PASSWORD = "Not-The-Password-7"  # noqa: S105 - a guess that fails, on purpose
MOST_ATTEMPTS = 10
"""A guard: the lock must come well before this many wrong passwords."""


@scenario(
    "locked-after-failed-checks",
    "Wrong passwords up to the limit lock the account and stop its payments; an operator unlocks it",
    features=("A1", "A6", "P4", "S1"),
)
async def locked_after_failed_checks(world: World) -> None:
    """Someone signs in to a bound, funded buyer's account with a wrong password until the
    failed-check limit (5): each attempt is a SecurityCheckFailed, the last locks the account
    (AccountStatusChanged locked, by the system) and raises SuspiciousActivityDetected
    (repeated_failed_checks). A checkout is then cancelled with account_locked. An operator
    reviews the proof and unlocks the account; the next checkout is paid into escrow."""
    buyer = await onboard_buyer(world)
    await top_up(world, buyer.account_id, usd(10000))
    await fail_checks_until_locked(world, buyer)
    locked = await world.event(AccountStatusChanged, account_id=buyer.account_id, status=AccountStatus.LOCKED)
    expect(locked.changed_by == "system", "the system to lock the account", got=locked.changed_by)
    await world.event(
        SuspiciousActivityDetected, account_id=buyer.account_id, kind=SuspiciousActivity.REPEATED_FAILED_CHECKS
    )
    world.say(f"{buyer.account_id} is locked: {locked.reason}")
    blocked = await checkout(world, buyer, world.fresh("seller"), usd(4250), item="Phone case")
    await expect_cancelled(world, blocked, "account_locked")

    operator = world.fresh("operator")
    world.say(f"{operator} reviews the holder's proof of identity and unlocks the account")
    unlock = UnlockAccount(
        account_id=buyer.account_id,
        operator_id=operator,
        reason="holder proved identity with passport and selfie; the failed sign-ins were the holder's own",
    )
    active = await world.reply(await world.send(unlock, about=buyer.account_id), AccountStatusChanged)
    expect(active.status is AccountStatus.ACTIVE, "the account active again", got=active.status.value)
    expect(active.changed_by == operator, f"the unlock made by {operator}", got=active.changed_by)
    order_id = await checkout(world, buyer, world.fresh("seller"), usd(4250), item="Phone case")
    await expect_in_escrow(world, order_id)


async def fail_checks_until_locked(world: World, buyer: Person) -> None:
    """Sign in with a wrong password until the failures reach the limit the events state."""
    for attempt in range(1, MOST_ATTEMPTS + 1):
        sign_in = SignIn(
            account_id=buyer.account_id,
            password=sealed_password(world, buyer, WRONG_PASSWORD),
            country=buyer.country,
        )
        sent = await world.send(sign_in, about=buyer.account_id)
        failed = await world.event(SecurityCheckFailed, caused_by=sent)
        refused = await world.event(CommandRejected, caused_by=sent)
        expect(refused.code == "wrong_password", "the sign-in refused as wrong_password", got=refused.code)
        expect(failed.failures_in_window == attempt, f"failure {attempt} counted", got=failed.failures_in_window)
        world.say(f"wrong password {attempt} of {failed.limit}")
        if failed.failures_in_window >= failed.limit:
            return
    raise ScenarioFailed(f"expected the account to lock within {MOST_ATTEMPTS} wrong passwords; it did not")
