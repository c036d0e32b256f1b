"""Escrow service handlers: hold captured funds, release them to the seller."""

from __future__ import annotations

from contracts import FundsHeld, FundsReleased, HoldFunds, ReleaseFunds
from services.escrow.domain import EscrowHold, hold_not_found
from services.escrow.store import HOLDS, LEDGER
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
        for entry in transfer.entries():
            ctx.append(LEDGER, entry)
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
        for entry in transfer.entries():
            ctx.append(LEDGER, entry)
    ctx.emit(
        FundsReleased(order_id=hold.order_id, seller_id=hold.seller_id, amount=hold.amount),
        idempotency_key=f"released:{hold.order_id}",
    )
