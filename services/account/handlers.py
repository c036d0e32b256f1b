"""Account service handlers: thin glue between messages, wallet rules and the store."""

from __future__ import annotations

from contracts import (
    CreditWallet,
    DebitWallet,
    FundWallet,
    Money,
    WalletCredited,
    WalletDebitDeclined,
    WalletDebited,
    WalletFunded,
)
from services.account.domain import MovementKind, Wallet, WalletRuleBroken, missing_wallet
from services.account.store import WalletStore
from shared.consumer import HandlerContext, MessageHandlers

handlers = MessageHandlers()


@handlers.on(FundWallet)
async def fund_wallet(command: FundWallet, ctx: HandlerContext) -> None:
    store = WalletStore(ctx.connection)
    reference = ctx.envelope.idempotency_key
    if (done := await store.find_movement(command.account_id, MovementKind.TOP_UP, reference)) is not None:
        ctx.emit(WalletFunded(account_id=command.account_id, amount=done.amount, balance=done.balance_after))
        return
    wallet = await store.get(command.account_id)
    is_new = wallet is None
    wallet = wallet or Wallet.open(command.account_id, command.amount.currency)
    wallet.top_up(command.amount)
    await store.save(wallet, is_new=is_new, kind=MovementKind.TOP_UP, reference=reference, amount=command.amount)
    ctx.emit(WalletFunded(account_id=command.account_id, amount=command.amount, balance=wallet.balance))


@handlers.on(DebitWallet)
async def debit_wallet(command: DebitWallet, ctx: HandlerContext) -> None:
    store = WalletStore(ctx.connection)
    if (done := await store.find_movement(command.account_id, MovementKind.DEBIT, command.order_id)) is not None:
        ctx.emit(_debited(command, done.balance_after))
        return
    try:
        wallet = await store.get(command.account_id)
        if wallet is None:
            raise missing_wallet(command.account_id)
        wallet.debit(command.amount)
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
    await store.save(wallet, is_new=False, kind=MovementKind.DEBIT, reference=command.order_id, amount=command.amount)
    ctx.emit(_debited(command, wallet.balance))


def _debited(command: DebitWallet, balance: Money) -> WalletDebited:
    return WalletDebited(
        account_id=command.account_id, order_id=command.order_id, amount=command.amount, balance=balance
    )


@handlers.on(CreditWallet)
async def credit_wallet(command: CreditWallet, ctx: HandlerContext) -> None:
    store = WalletStore(ctx.connection)
    if (done := await store.find_movement(command.account_id, MovementKind.CREDIT, command.order_id)) is not None:
        ctx.emit(_credited(command, done.balance_after))
        return
    wallet = await store.get(command.account_id)
    is_new = wallet is None
    wallet = wallet or Wallet.open(command.account_id, command.amount.currency)
    wallet.credit(command.amount)  # a currency mismatch is refused with CommandRejected
    await store.save(wallet, is_new=is_new, kind=MovementKind.CREDIT, reference=command.order_id, amount=command.amount)
    ctx.emit(_credited(command, wallet.balance))


def _credited(command: CreditWallet, balance: Money) -> WalletCredited:
    return WalletCredited(
        account_id=command.account_id, order_id=command.order_id, amount=command.amount, balance=balance
    )
