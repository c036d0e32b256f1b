"""E1 rules without state: what a transfer must keep whatever the ledger holds, and how each phase moves the balances."""

from __future__ import annotations

from datetime import datetime

from services.escrow.domain.ledger._text import show
from services.escrow.domain.ledger.accounts import AccountBalance, AccountFlags
from services.escrow.domain.ledger.errors import InvalidTransfer, PendingRefused, RefusalCode
from services.escrow.domain.ledger.transfers import Transfer, TransferKind


def refuse_invalid(transfer: Transfer, now: datetime) -> None:
    """The rules a transfer must keep whatever the ledger holds."""
    tid, amount = transfer.transfer_id, transfer.amount
    if transfer.debit_account == transfer.credit_account:
        raise InvalidTransfer(
            RefusalCode.ACCOUNTS_MUST_DIFFER, tid, f"debits and credits the same account {transfer.debit_account}"
        )
    for side, account in (("debit", transfer.debit_account), ("credit", transfer.credit_account)):
        if account.currency != amount.currency:
            raise InvalidTransfer(
                RefusalCode.CURRENCY_MISMATCH,
                tid,
                f"{show(amount.amount_minor, amount.currency)} cannot move through the {side} account {account} "
                f"in {account.currency}",
            )
    if amount.amount_minor <= 0:
        raise InvalidTransfer(
            RefusalCode.AMOUNT_NOT_POSITIVE,
            tid,
            f"the amount must be positive, not {show(amount.amount_minor, amount.currency)}",
        )
    if transfer.expires_at is not None and transfer.expires_at <= now:
        raise InvalidTransfer(
            RefusalCode.TIMEOUT_NOT_IN_FUTURE,
            tid,
            f"expires_at {transfer.expires_at.isoformat()} is not after now {now.isoformat()}",
        )


def refuse_by_time(transfer: Transfer, pending: Transfer, now: datetime) -> None:
    """A post or void only before the pending's timeout; an expiry only from it on."""
    expires_at = pending.expires_at
    due = expires_at is not None and expires_at <= now
    if transfer.kind is TransferKind.EXPIRE_PENDING and not due:
        when = "it has no timeout" if expires_at is None else f"it expires at {expires_at.isoformat()}"
        raise PendingRefused(
            RefusalCode.PENDING_NOT_EXPIRED,
            transfer.transfer_id,
            f"pending transfer {pending.transfer_id} has not expired at {now.isoformat()}: {when}",
        )
    if transfer.kind is not TransferKind.EXPIRE_PENDING and due:
        assert expires_at is not None
        raise PendingRefused(
            RefusalCode.PENDING_EXPIRED,
            transfer.transfer_id,
            f"pending transfer {pending.transfer_id} expired at {expires_at.isoformat()}; "
            f"now is {now.isoformat()}, too late to {verb(transfer.kind)} it",
        )


def refuse_other_pending_fields(transfer: Transfer, pending: Transfer) -> None:
    """A post, void or expiry moves between the pending's accounts, for its order, with its code."""
    for name in ("debit_account", "credit_account", "order_id", "code"):
        ours, theirs = getattr(transfer, name), getattr(pending, name)
        if ours != theirs:
            raise PendingRefused(
                RefusalCode.PENDING_TRANSFER_DIFFERS,
                transfer.transfer_id,
                f"its {name} {ours} differs from pending transfer {pending.transfer_id}'s {theirs}",
            )


def refuse_other_pending_amount(transfer: Transfer, pending: Transfer) -> None:
    ours, reserved = transfer.amount.amount_minor, pending.amount.amount_minor
    currency = pending.amount.currency
    if transfer.kind is TransferKind.POST_PENDING and ours > reserved:
        raise PendingRefused(
            RefusalCode.EXCEEDS_PENDING_AMOUNT,
            transfer.transfer_id,
            f"posts {show(ours, currency)} but pending transfer {pending.transfer_id} reserved only "
            f"{show(reserved, currency)}: {show(ours - reserved, currency)} more than it holds",
        )
    if transfer.kind is not TransferKind.POST_PENDING and ours != reserved:
        raise PendingRefused(
            RefusalCode.AMOUNT_DIFFERS_FROM_PENDING,
            transfer.transfer_id,
            f"a {transfer.kind} releases all of pending transfer {pending.transfer_id}, "
            f"{show(reserved, currency)}, not {show(ours, currency)}",
        )


def phase_deltas(kind: TransferKind, amount: int, pending_amount: int) -> tuple[int, int]:
    """``(pending, posted)`` change of the debit account's debits and, alike, the credit account's credits.

    Both accounts move by the same figures: that is what keeps every currency's debits equal to
    its credits. Ending a pending transfer always releases all it reserved (``pending_amount``),
    and a post then posts its own amount.
    """
    if kind is TransferKind.SINGLE_PHASE:
        return 0, amount
    if kind is TransferKind.PENDING:
        return amount, 0
    if kind is TransferKind.POST_PENDING:
        return -pending_amount, amount
    return -pending_amount, 0


def flag_problem(balance: AccountBalance, flags: AccountFlags, bound: int) -> tuple[RefusalCode, str] | None:
    """What is wrong with ``balance`` under ``flags`` and the balance ``bound``, with figures; None if nothing."""
    currency = balance.account.currency
    account = balance.account
    if balance.debits > bound:
        return (
            RefusalCode.OVERFLOWS_DEBITS,
            f"{account} with debits {show(balance.debits, currency)} above the bound {show(bound, currency)}",
        )
    if balance.credits > bound:
        return (
            RefusalCode.OVERFLOWS_CREDITS,
            f"{account} with credits {show(balance.credits, currency)} above the bound {show(bound, currency)}",
        )
    if flags.debits_must_not_exceed_credits and balance.debits > balance.credits_posted:
        return RefusalCode.EXCEEDS_CREDITS, (
            f"{account} (debits_must_not_exceed_credits) with debits {show(balance.debits_posted, currency)} posted "
            f"+ {show(balance.debits_pending, currency)} pending = {show(balance.debits, currency)} against "
            f"credits posted {show(balance.credits_posted, currency)}: "
            f"{show(balance.debits - balance.credits_posted, currency)} over"
        )
    if flags.credits_must_not_exceed_debits and balance.credits > balance.debits_posted:
        return RefusalCode.EXCEEDS_DEBITS, (
            f"{account} (credits_must_not_exceed_debits) with credits {show(balance.credits_posted, currency)} posted "
            f"+ {show(balance.credits_pending, currency)} pending = {show(balance.credits, currency)} against "
            f"debits posted {show(balance.debits_posted, currency)}: "
            f"{show(balance.credits - balance.debits_posted, currency)} over"
        )
    return None


def verb(kind: TransferKind) -> str:
    return "post" if kind is TransferKind.POST_PENDING else "void"
