"""Escrow service handlers: hold captured funds, give refunds' parts back, release the rest to the seller."""

from __future__ import annotations

from contracts import FundsHeld, FundsReleased, FundsReturned, HoldFunds, ReleaseFunds, ReturnFunds
from services.escrow.domain import EscrowHold, Transfer, hold_not_found
from services.escrow.store import HOLDS, LEDGER, RETURNS
from shared.consumer import HandlerContext, MessageHandlers

handlers = MessageHandlers()


@handlers.on(HoldFunds, loads=[HOLDS.by("order_id")])
def hold_funds(command: HoldFunds, ctx: HandlerContext) -> None:
    hold = ctx.get(HOLDS, command.order_id)
    if hold is not None:
        hold.check_same_request(command.buyer_id, command.seller_id, command.amount)
    else:
        hold, transfer = EscrowHold.place(command.order_id, command.buyer_id, command.seller_id, command.amount)
        ctx.add(HOLDS, hold)
        _book(transfer, ctx)
    ctx.emit(
        FundsHeld(order_id=hold.order_id, buyer_id=hold.buyer_id, seller_id=hold.seller_id, amount=hold.amount),
        idempotency_key=f"held:{hold.order_id}",
    )


@handlers.on(ReleaseFunds, loads=[HOLDS.by("order_id")])
def release_funds(command: ReleaseFunds, ctx: HandlerContext) -> None:
    hold = ctx.get(HOLDS, command.order_id)
    if hold is None:
        raise hold_not_found(command.order_id)
    if (transfer := hold.release()) is not None:
        _book(transfer, ctx)
    ctx.emit(
        FundsReleased(order_id=hold.order_id, seller_id=hold.seller_id, amount=hold.still_held),
        idempotency_key=f"released:{hold.order_id}",
    )


@handlers.on(
    ReturnFunds, loads=[HOLDS.by("order_id"), RETURNS.by(lambda command, _: (command.order_id, command.refund_id))]
)
def return_funds(command: ReturnFunds, ctx: HandlerContext) -> None:
    hold = ctx.get(HOLDS, command.order_id)
    if hold is None:
        raise hold_not_found(command.order_id)
    given = ctx.get(RETURNS, (command.order_id, command.refund_id))
    if given is not None:  # a repeat: the same answer, no money moved twice
        given.check_same_request(command.amount)
    else:
        given, transfer = hold.give_back(command.refund_id, command.amount)
        ctx.add(RETURNS, given)
        _book(transfer, ctx)
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


def _book(transfer: Transfer, ctx: HandlerContext) -> None:
    for entry in transfer.entries():
        ctx.append(LEDGER, entry)
