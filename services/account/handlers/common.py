"""What several account handlers share: the loads, finding the account, announcing changes."""

from __future__ import annotations

from typing import Any

from contracts import AccountStatusChanged, SecurityCheckFailed, SuspiciousActivity
from contracts.registration import SuspiciousActivityDetected
from services.account.domain.accounts import Account, StatusChange
from services.account.domain.credentials import normalize_phone
from services.account.ports import ports
from services.account.store import (
    ACCOUNTS,
    AUDIT,
    FUNDING_SOURCES,
    GRANTS,
    IDENTITY_REVIEWS,
    PHONE_CLAIMS,
)
from shared.consumer import HandlerContext
from shared.errors import CommandRefused


def _phone_key(command: Any, _envelope: Any) -> str | None:
    try:
        return normalize_phone(command.phone)
    except CommandRefused:
        return None  # the handler refuses it, naming the rule


ACCOUNT = ACCOUNTS.by("account_id")
PHONE = PHONE_CLAIMS.by(_phone_key)
REVIEW = IDENTITY_REVIEWS.by(lambda command, _: (command.account_id, command.level))
L1_REVIEW = IDENTITY_REVIEWS.by(lambda command, _: (command.account_id, "L1"))
SOURCE = FUNDING_SOURCES.by(lambda command, _: (command.account_id, command.source_id))
PAYING_SOURCE = FUNDING_SOURCES.by(
    lambda command, _: None if command.source_id is None else (command.account_id, command.source_id)
)
GRANT = GRANTS.by(lambda command, _: (command.account_id, command.marketplace_id))


def account_of(ctx: HandlerContext, command: Any) -> Account:
    """The account a command names (every account command has ``account_id``), or a refusal."""
    account_id: str = command.account_id
    account = ctx.get(ACCOUNTS, account_id)
    if account is None:
        raise CommandRefused("account_not_found", f"account {account_id} is not registered")
    return account


WRONG_PASSWORD = CommandRefused("wrong_password", "password: does not match")


def check_password(ctx: HandlerContext, account: Account, sealed: str, *, check: str = "password") -> bool:
    """Open and verify a sealed password; a wrong one counts as a failed check (and may lock)."""
    deps = ports(ctx)
    password = deps.unsealer.open(sealed, purpose=f"password:{account.account_id}", field="password")
    if deps.hasher.verify(account.password_hash, password):
        account.record_passed_check()
        return True
    failed_check(ctx, account, check)
    return False


def failed_check(ctx: HandlerContext, account: Account, check: str) -> None:
    """Count a failed check, say so, and lock the account when it reaches the limit."""
    policy = ports(ctx).policy
    lock = account.record_failed_check(ctx.now, policy)
    ctx.emit(
        SecurityCheckFailed(
            account_id=account.account_id,
            check=check,
            failures_in_window=account.failed_checks,
            limit=policy.failed_check_limit,
        )
    )
    if lock is not None:
        announce(ctx, account, lock)
        ctx.emit(
            SuspiciousActivityDetected(
                account_id=account.account_id, kind=SuspiciousActivity.REPEATED_FAILED_CHECKS, detail=lock.reason
            )
        )


def announce(ctx: HandlerContext, account: Account, change: StatusChange) -> None:
    """Publish a status change and write it to the audit trail."""
    ctx.emit(
        AccountStatusChanged(
            account_id=account.account_id,
            status=change.status,
            previous_status=change.previous,
            reason=change.reason,
            changed_by=change.changed_by,
        ),
        idempotency_key=f"status:{account.account_id}:{ctx.envelope.message_id}",
    )
    audit(ctx, account.account_id, f"status:{change.status}", change.changed_by, change.reason)


def audit(ctx: HandlerContext, account_id: str, action: str, actor: str, detail: str) -> None:
    ctx.append(
        AUDIT, {"account_id": account_id, "action": action, "actor": actor, "detail": detail[:500], "at": ctx.now}
    )
