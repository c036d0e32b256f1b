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
from services.account.domain import MovementKind, Wallet, WalletRuleBroken, missing_wallet
from services.account.store import MOVEMENTS, WALLETS
from shared.consumer import HandlerContext, MessageHandlers

handlers = MessageHandlers()

WALLET = WALLETS.by("account_id")
TOP_UP = MOVEMENTS.by(lambda command, envelope: (command.account_id, MovementKind.TOP_UP, envelope.idempotency_key))
DEBIT = MOVEMENTS.by(lambda command, _: (command.account_id, MovementKind.DEBIT, command.order_id))
CREDIT = MOVEMENTS.by(lambda command, _: (command.account_id, MovementKind.CREDIT, command.order_id))


def _wallet_to_pay_into(command: FundWallet | CreditWallet, ctx: HandlerContext) -> Wallet:
    """The account's wallet, opened in the amount's currency on its first payment in."""
    return ctx.read(WALLET, command) or ctx.add(WALLETS, Wallet.open(command.account_id, command.amount.currency))


@handlers.on(FundWallet, loads=[WALLET, TOP_UP])
def fund_wallet(command: FundWallet, ctx: HandlerContext) -> None:
    movement = ctx.read(TOP_UP, command)
    if movement is None:
        reference = ctx.envelope.idempotency_key
        movement = ctx.add(MOVEMENTS, _wallet_to_pay_into(command, ctx).top_up(command.amount, reference))
    movement.check_same_amount(command.amount)
    ctx.emit(WalletFunded(account_id=command.account_id, amount=movement.amount, balance=movement.balance_after))


@handlers.on(DebitWallet, loads=[WALLET, DEBIT])
def debit_wallet(command: DebitWallet, ctx: HandlerContext) -> None:
    movement = ctx.read(DEBIT, command)
    if movement is None:
        try:
            wallet = ctx.read(WALLET, command)
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
    ctx.emit(
        WalletDebited(
            account_id=command.account_id,
            order_id=command.order_id,
            amount=movement.amount,
            balance=movement.balance_after,
        )
    )


@handlers.on(CreditWallet, loads=[WALLET, CREDIT])
def credit_wallet(command: CreditWallet, ctx: HandlerContext) -> None:
    movement = ctx.read(CREDIT, command)
    if movement is None:  # a currency mismatch is refused
        movement = ctx.add(MOVEMENTS, _wallet_to_pay_into(command, ctx).credit(command.amount, command.order_id))
    movement.check_same_amount(command.amount)
    ctx.emit(
        WalletCredited(
            account_id=command.account_id,
            order_id=command.order_id,
            amount=movement.amount,
            balance=movement.balance_after,
        )
    )
