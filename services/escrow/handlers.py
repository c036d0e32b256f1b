"""Escrow service handlers: hold captured funds, freeze them for a dispute, give refunds' parts
back, release the rest to the seller.

Each handler decides with the hold (holds.py), then books the hold's transfers through a
ledger view of exactly the accounts they touch (books.py), which enforces every ledger rule;
the unit of work writes the changed account rows (version-checked) and appends the records.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from contracts import (
    FreezeFunds,
    FundsFrozen,
    FundsHeld,
    FundsReleased,
    FundsReturned,
    HoldFunds,
    ReleaseFunds,
    ReturnFunds,
)
from services.escrow.domain import (
    ORDER_ACCOUNT_KINDS,
    AccountState,
    EscrowHold,
    buyer_currency,
    hold_not_found,
    settle,
    view,
)
from services.escrow.domain.ledger import PLATFORM, AccountId, AccountKind, Transfer
from services.escrow.store import HOLDS, LEDGER_ACCOUNTS, LEDGER_TRANSFERS, ORDER_ACCOUNTS, RETURNS, transfer_row
from shared.aggregates import Key
from shared.consumer import HandlerContext, MessageHandlers

handlers = MessageHandlers()


def _order_accounts(command: Any, _envelope: Any) -> list[Key]:
    return [(command.order_id, kind.value) for kind in ORDER_ACCOUNT_KINDS]


def _hold_accounts(command: HoldFunds, _envelope: Any) -> list[Key]:
    """The codes of the shared accounts a hold may touch (plain strings: a key never raises; an
    id no account can be named by is the handler's refusal)."""
    paid_in = buyer_currency(command.amount, command.breakdown)
    codes = [f"{AccountKind.BUYER_FUNDS_IN}:{command.buyer_id}:{paid_in}"]
    if paid_in != command.amount.currency:
        codes += [
            f"{AccountKind.FEE_REVENUE}:{PLATFORM}:{paid_in}",
            f"{AccountKind.FX_POSITION}:{PLATFORM}:{paid_in}",
            f"{AccountKind.FX_POSITION}:{PLATFORM}:{command.amount.currency}",
        ]
    return list(codes)


ORDER_LEDGER = ORDER_ACCOUNTS.each(_order_accounts)


@handlers.on(HoldFunds, loads=[HOLDS.by("order_id"), ORDER_LEDGER, LEDGER_ACCOUNTS.each(_hold_accounts)])
def hold_funds(command: HoldFunds, ctx: HandlerContext) -> None:
    hold = ctx.get(HOLDS, command.order_id)
    if hold is not None:
        hold.check_same_request(command.buyer_id, command.seller_id, command.amount)
    else:
        hold, transfers = EscrowHold.place(
            command.order_id,
            command.buyer_id,
            command.seller_id,
            command.amount,
            breakdown=command.breakdown,
            now=ctx.now,
        )
        ctx.add(HOLDS, hold)
        _book(transfers, None, ctx)
    ctx.emit(
        FundsHeld(order_id=hold.order_id, buyer_id=hold.buyer_id, seller_id=hold.seller_id, amount=hold.amount),
        idempotency_key=f"held:{hold.order_id}",
    )


@handlers.on(ReleaseFunds, loads=[HOLDS.by("order_id"), ORDER_LEDGER])
def release_funds(command: ReleaseFunds, ctx: HandlerContext) -> None:
    hold = ctx.get(HOLDS, command.order_id)
    if hold is None:
        raise hold_not_found(command.order_id)
    reservation = hold.reservation()
    if (transfers := hold.release(command.dispute_id)) is not None:
        _book(transfers, reservation, ctx)
    ctx.emit(
        FundsReleased(order_id=hold.order_id, seller_id=hold.seller_id, amount=hold.still_held),
        idempotency_key=f"released:{hold.order_id}",
    )


@handlers.on(FreezeFunds, loads=[HOLDS.by("order_id")])
def freeze_funds(command: FreezeFunds, ctx: HandlerContext) -> None:
    """E3: no transfer moves; the hold only remembers which dispute may end it."""
    hold = ctx.get(HOLDS, command.order_id)
    if hold is None:
        raise hold_not_found(command.order_id)
    hold.freeze(command.dispute_id, ctx.now)
    ctx.emit(
        FundsFrozen(order_id=hold.order_id, dispute_id=command.dispute_id, held=hold.still_held),
        idempotency_key=f"frozen:{hold.order_id}:{command.dispute_id}",
    )


@handlers.on(
    ReturnFunds,
    loads=[HOLDS.by("order_id"), RETURNS.by(lambda command, _: (command.order_id, command.refund_id)), ORDER_LEDGER],
)
def return_funds(command: ReturnFunds, ctx: HandlerContext) -> None:
    hold = ctx.get(HOLDS, command.order_id)
    if hold is None:
        raise hold_not_found(command.order_id)
    given = ctx.get(RETURNS, (command.order_id, command.refund_id))
    if given is not None:  # a repeat: the same answer, no money moved twice
        given.check_same_request(command.amount, command.dispute_id)
    else:
        reservation = hold.reservation()
        given, transfers = hold.give_back(command.refund_id, command.amount, ctx.now, command.dispute_id)
        ctx.add(RETURNS, given)
        _book(transfers, reservation, ctx)
    ctx.emit(
        FundsReturned(
            order_id=hold.order_id,
            buyer_id=hold.buyer_id,
            refund_id=given.refund_id,
            amount=given.amount,
            still_held=given.still_held,
        ),
        idempotency_key=f"returned:{hold.order_id}:{given.refund_id}",
    )


def _book(transfers: Sequence[Transfer], reservation: Any, ctx: HandlerContext) -> None:
    """Apply ``transfers`` as one linked set through a view of the accounts they touch; keep the
    new totals and append the records. A refusal raises before anything is kept."""
    accounts = sorted({a for t in transfers for a in (t.debit_account, t.credit_account)})
    states = [_state(account, ctx) for account in accounts]
    ledger = view(states, () if reservation is None else (reservation,))
    records = ledger.apply_linked(transfers, now=ctx.now)
    settle(ledger, states)
    for record in records:
        ctx.append(LEDGER_TRANSFERS, transfer_row(record))


def _state(account: AccountId, ctx: HandlerContext) -> AccountState:
    """The stored account, or a new one added to the batch (it exists from its first transfer)."""
    owned_by_order = account.kind in ORDER_ACCOUNT_KINDS
    aggregate, key = (
        (ORDER_ACCOUNTS, (account.owner, account.kind.value)) if owned_by_order else (LEDGER_ACCOUNTS, account.code)
    )
    state = ctx.get(aggregate, key)
    if state is None:
        return ctx.add(aggregate, AccountState.opened(account))
    if state.code != account.code:  # an order's account in another currency than its hold's: damage
        raise RuntimeError(f"{account} is stored as {state.code}")
    return state
