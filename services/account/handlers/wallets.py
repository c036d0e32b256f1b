"""Wallets, and the account's say on every payment: top-ups, seller credits, and
AuthorizePayment, where every account reason to stop a payment is checked against the
account's own state (and the wallet debited in the same step when it pays). The wallet is
debited once per attempt at paying an order (S2), and every answer names the attempt it answers."""

from __future__ import annotations

from contracts import (
    AuthorizePayment,
    BindingScope,
    CreditWallet,
    DeclineReason,
    FundingType,
    FundWallet,
    Money,
    PaymentAuthorizationDeclined,
    PaymentAuthorized,
    SecurityMethod,
    WalletCredited,
    WalletFunded,
)
from contracts.sealing import Purpose
from services.account.domain.accounts import Account
from services.account.domain.bindings import binding_missing
from services.account.domain.credentials import totp_matches
from services.account.domain.errors import PaymentDeclined
from services.account.domain.funding_sources import StoredSource, unknown_source
from services.account.domain.wallets import Movement, MovementKind, Wallet, missing_wallet, payment_debit_reference
from services.account.handlers import handlers
from services.account.handlers.common import ACCOUNT, GRANT, PAYING_SOURCE, failed_check
from services.account.ports import ports
from services.account.store import ACCOUNTS, MOVEMENTS, WALLETS
from shared.consumer import HandlerContext
from shared.errors import CommandRefused
from shared.sealing import SealedSecretRefused

WALLET = WALLETS.by("account_id")
TOP_UP = MOVEMENTS.by(lambda command, envelope: (command.account_id, MovementKind.TOP_UP, envelope.idempotency_key))
DEBIT = MOVEMENTS.by(lambda command, _: (command.account_id, MovementKind.DEBIT, debit_reference(command)))
CREDIT = MOVEMENTS.by(lambda command, _: (command.account_id, MovementKind.CREDIT, credit_reference(command)))


def debit_reference(command: AuthorizePayment) -> str:
    """One debit per attempt at paying an order (S2)."""
    return payment_debit_reference(command.order_id, command.attempt)


def credit_reference(command: CreditWallet) -> str:
    """One credit per account and reference: a seller's payout is its order's, a refund its own."""
    return command.reference or command.order_id


def _wallet_to_pay_into(command: FundWallet | CreditWallet, ctx: HandlerContext) -> Wallet:
    """The account's wallet, opened in the amount's currency on its first payment in."""
    return ctx.read(WALLET, command) or ctx.add(WALLETS, Wallet.open(command.account_id, command.amount.currency))


@handlers.on(FundWallet, loads=[ACCOUNT, WALLET, TOP_UP, PAYING_SOURCE])
def fund_wallet(command: FundWallet, ctx: HandlerContext) -> None:
    """A top-up. Naming a source, the account must be registered and the source live; without
    one it is the sandbox's test money (as in Stripe's test mode), which opens a wallet for any
    id. (Charging the source on the funding network comes with the payment service's port.)"""
    movement = ctx.read(TOP_UP, command)
    if movement is None:
        account = ctx.get(ACCOUNTS, command.account_id)
        if account is not None:
            account.check_can_receive()
        if command.source_id is not None:
            if account is None:
                raise CommandRefused("account_not_found", f"account {command.account_id} is not registered")
            _usable_source(ctx, command.account_id, ctx.read(PAYING_SOURCE, command), command.source_id)
        reference = ctx.envelope.idempotency_key
        movement = ctx.add(MOVEMENTS, _wallet_to_pay_into(command, ctx).top_up(command.amount, reference))
    movement.check_same_amount(command.amount)
    ctx.emit(WalletFunded(account_id=command.account_id, amount=movement.amount, balance=movement.balance_after))


@handlers.on(AuthorizePayment, loads=[ACCOUNT, GRANT, PAYING_SOURCE, WALLET, DEBIT])
def authorize_payment(command: AuthorizePayment, ctx: HandlerContext) -> None:
    debited = ctx.read(DEBIT, command)
    if debited is not None:  # a repeat of an attempt that already took from the wallet: the first answer again
        source = ctx.read(PAYING_SOURCE, command) if command.use_balance_first else None
        if source is None:
            debited.check_same_amount(command.amount)
        ctx.emit(_authorized(command, source, debited))
        return
    try:
        source, movement = _authorize(command, ctx)
    except PaymentDeclined as declined:
        ctx.emit(
            PaymentAuthorizationDeclined(
                account_id=command.account_id,
                order_id=command.order_id,
                amount=command.amount,
                reason=declined.decline_reason,
                detail=declined.reason,
                attempt=command.attempt,
            )
        )
        return
    ctx.emit(_authorized(command, source, movement))


def _authorize(command: AuthorizePayment, ctx: HandlerContext) -> tuple[StoredSource | None, Movement | None]:
    """Every account reason a payment may not go ahead, in the order a buyer would fix them."""
    account = ctx.read(ACCOUNT, command)
    if account is None:
        raise PaymentDeclined(DeclineReason.ACCOUNT_NOT_FOUND, f"account {command.account_id} is not registered")
    account.check_can_pay()
    grant = ctx.read(GRANT, command)
    if grant is None:
        raise binding_missing(command.account_id, command.marketplace_id, "the buyer granted it nothing")
    grant.check_allows(BindingScope.PAY, ctx.now)
    source = None
    if command.source_id is not None:
        source = _usable_source(ctx, command.account_id, ctx.read(PAYING_SOURCE, command), command.source_id)
    funding_type = source.type if source else FundingType.WALLET
    amount = amount_for(command, funding_type)
    region = ports(ctx).regions.get(account.country)
    if not region.allows(funding_type):
        raise PaymentDeclined(
            DeclineReason.FUNDING_TYPE_NOT_ALLOWED, f"{funding_type.value} payments are not offered in {region.country}"
        )
    # An amount in another currency than the region's is always checked: its threshold is in the region's.
    if amount.currency != region.currency or region.needs_security_check(amount):
        _security_check(command, amount, account, ctx)
    if source is not None:
        return source, _balance_first(command, amount, ctx) if command.use_balance_first else None
    wallet = ctx.read(WALLET, command)
    if wallet is None:
        raise missing_wallet(command.account_id)
    return None, ctx.add(MOVEMENTS, wallet.debit(command.amount, debit_reference(command)))


def amount_for(command: AuthorizePayment, funding_type: FundingType) -> Money:
    """What the buyer pays from this funding type: a cross-border fee differs by type (P3)."""
    if funding_type is FundingType.CARD and command.card_amount is not None:
        return command.card_amount
    if funding_type is FundingType.BANK_ACCOUNT and command.bank_account_amount is not None:
        return command.bank_account_amount
    return command.amount


def _balance_first(command: AuthorizePayment, amount: Money, ctx: HandlerContext) -> Movement | None:
    """P1 split: the wallet pays what it holds of the amount (the source pays the rest)."""
    wallet = ctx.read(WALLET, command)
    if wallet is None or wallet.balance.currency != amount.currency or wallet.balance.amount_minor == 0:
        return None
    leg = Money(amount_minor=min(wallet.balance.amount_minor, amount.amount_minor), currency=amount.currency)
    return ctx.add(MOVEMENTS, wallet.debit(leg, debit_reference(command)))


def _usable_source(ctx: HandlerContext, account_id: str, source: StoredSource | None, source_id: str) -> StoredSource:
    if source is None:
        raise unknown_source(account_id, source_id)
    source.check_usable(ctx.now.date())
    return source


def _security_check(command: AuthorizePayment, amount: Money, account: Account, ctx: HandlerContext) -> None:
    """A6: above the threshold the buyer proves it is them, with the PIN or a TOTP code sealed
    for this very order; a wrong proof counts toward locking the account."""
    deps = ports(ctx)
    method, proof = command.security_method, command.security_proof
    if method is None or proof is None:
        raise PaymentDeclined(
            DeclineReason.SECURITY_CHECK_REQUIRED,
            f"a payment of {amount} needs the buyer's PIN or a TOTP code for order {command.order_id}",
        )
    stored = account.pin_hash if method is SecurityMethod.PIN else account.totp_secret_box
    if stored is None:
        raise PaymentDeclined(
            DeclineReason.SECURITY_CHECK_REQUIRED, f"account {account.account_id} has no {method.value} set up"
        )
    try:
        value = deps.unsealer.open(proof, purpose=Purpose.payment(command.order_id), field="security_proof")
    except SealedSecretRefused as refused:
        raise PaymentDeclined(DeclineReason.SECURITY_CHECK_FAILED, refused.reason) from None
    if method is SecurityMethod.PIN:
        passed = deps.hasher.verify(stored, value)
    else:
        passed = totp_matches(deps.take_out(stored), value, ctx.now)
    if passed:
        account.record_passed_check()
        return
    failed_check(ctx, account, method.value)
    if account.failed_checks >= deps.policy.failed_check_limit:
        raise PaymentDeclined(DeclineReason.ACCOUNT_LOCKED, f"account {account.account_id} is now locked")
    raise PaymentDeclined(DeclineReason.SECURITY_CHECK_FAILED, f"the {method.value} is wrong")


def _authorized(command: AuthorizePayment, source: StoredSource | None, movement: Movement | None) -> PaymentAuthorized:
    """The answer, with each leg: the wallet's (debited now) and the source's (to be charged)."""
    wallet_leg = movement.amount if movement else None
    amount = amount_for(command, source.type if source else FundingType.WALLET)
    if source is None:
        source_leg = None
    else:
        paid = wallet_leg.amount_minor if wallet_leg else 0
        source_leg = Money(amount_minor=amount.amount_minor - paid, currency=amount.currency)
    return PaymentAuthorized(
        account_id=command.account_id,
        order_id=command.order_id,
        amount=amount,
        funding_type=source.type if source else FundingType.WALLET,
        source=source.public() if source else None,
        source_token=source.token if source else None,
        balance=movement.balance_after if movement else None,
        wallet_leg=wallet_leg,
        source_leg=source_leg,
        attempt=command.attempt,
    )


@handlers.on(CreditWallet, loads=[WALLET, CREDIT])
def credit_wallet(command: CreditWallet, ctx: HandlerContext) -> None:
    movement = ctx.read(CREDIT, command)
    if movement is None:  # a currency mismatch is refused
        movement = ctx.add(
            MOVEMENTS, _wallet_to_pay_into(command, ctx).credit(command.amount, credit_reference(command))
        )
    movement.check_same_amount(command.amount)
    ctx.emit(
        WalletCredited(
            account_id=command.account_id,
            order_id=command.order_id,
            amount=movement.amount,
            balance=movement.balance_after,
        )
    )
