"""Account service handlers: thin glue between messages and wallet rules.

Each names what it reads (``loads=``); the batch unit of work reads it for the whole batch
and stores what changed.
"""

from __future__ import annotations

from contracts import (
    CreditWallet,
    DebitWallet,
    FundWallet,
    WalletCredited,
    WalletDebitDeclined,
    WalletDebited,
    WalletFunded,
)
from services.account.domain import Movement, MovementKind, Wallet, WalletRuleBroken, missing_wallet
from services.account.store import MOVEMENTS, WALLETS
from shared.consumer import HandlerContext, MessageHandlers

handlers = MessageHandlers()


@handlers.on(
    FundWallet,
    loads=[
        WALLETS.by("account_id"),
        MOVEMENTS.by(lambda command, envelope: (command.account_id, MovementKind.TOP_UP, envelope.idempotency_key)),
    ],
)
def fund_wallet(command: FundWallet, ctx: HandlerContext) -> None:
    reference = ctx.envelope.idempotency_key
    movement = ctx.get(MOVEMENTS, (command.account_id, MovementKind.TOP_UP, reference))
    if movement is None:
        wallet = ctx.get(WALLETS, command.account_id) or ctx.add(
            WALLETS, Wallet.open(command.account_id, command.amount.currency)
        )
        movement = ctx.add(MOVEMENTS, wallet.top_up(command.amount, reference))
    movement.check_same_amount(command.amount)
    ctx.emit(WalletFunded(account_id=command.account_id, amount=movement.amount, balance=movement.balance_after))


@handlers.on(
    DebitWallet,
    loads=[
        WALLETS.by("account_id"),
        MOVEMENTS.by(lambda command, _: (command.account_id, MovementKind.DEBIT, command.order_id)),
    ],
)
def debit_wallet(command: DebitWallet, ctx: HandlerContext) -> None:
    movement = ctx.get(MOVEMENTS, (command.account_id, MovementKind.DEBIT, command.order_id))
    if movement is None:
        try:
            wallet = ctx.get(WALLETS, command.account_id)
            if wallet is None:
                raise missing_wallet(command.account_id)
            movement = ctx.add(MOVEMENTS, wallet.debit(command.amount, command.order_id))
        except WalletRuleBroken as broken:
            ctx.emit(
                WalletDebitDeclined(
                    account_id=command.account_id,
                    order_id=command.order_id,
                    amount=command.amount,
                    reason=broken.decline_reason,
                    detail=broken.reason,
                )
            )
            return
    movement.check_same_amount(command.amount)
    ctx.emit(_debited(command, movement))


def _debited(command: DebitWallet, movement: Movement) -> WalletDebited:
    return WalletDebited(
        account_id=command.account_id, order_id=command.order_id, amount=movement.amount, balance=movement.balance_after
    )


@handlers.on(
    CreditWallet,
    loads=[
        WALLETS.by("account_id"),
        MOVEMENTS.by(lambda command, _: (command.account_id, MovementKind.CREDIT, command.order_id)),
    ],
)
def credit_wallet(command: CreditWallet, ctx: HandlerContext) -> None:
    movement = ctx.get(MOVEMENTS, (command.account_id, MovementKind.CREDIT, command.order_id))
    if movement is None:
        wallet = ctx.get(WALLETS, command.account_id) or ctx.add(
            WALLETS, Wallet.open(command.account_id, command.amount.currency)
        )
        movement = ctx.add(MOVEMENTS, wallet.credit(command.amount, command.order_id))  # a mismatch is refused
    movement.check_same_amount(command.amount)
    ctx.emit(
        WalletCredited(
            account_id=command.account_id,
            order_id=command.order_id,
            amount=movement.amount,
            balance=movement.balance_after,
        )
    )
