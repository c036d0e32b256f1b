"""A1 and A6: registering, proving the phone, signing in, and the status moves operators make."""

from __future__ import annotations

from contracts import (
    AccountRegistered,
    AccountStatus,
    CloseAccount,
    PhoneCodeSent,
    PhoneVerificationFailed,
    RegisterAccount,
    ResendPhoneCode,
    RestrictAccount,
    SignedIn,
    SignIn,
    SuspiciousActivity,
    SuspiciousActivityDetected,
    UnlockAccount,
    VerifyPhone,
)
from contracts.sealing import Purpose
from services.account.domain.accounts import Account, CodeCheck
from services.account.domain.credentials import check_password_strength, mask_phone, normalize_phone
from services.account.domain.phones import PhoneClaim
from services.account.domain.wallets import Wallet
from services.account.handlers import handlers
from services.account.handlers.common import (
    ACCOUNT,
    PHONE,
    WRONG_PASSWORD,
    account_of,
    announce,
    audit,
    check_password,
)
from services.account.handlers.wallets import WALLET
from services.account.ports import ports
from services.account.store import ACCOUNTS, PHONE_CLAIMS, WALLETS
from shared.consumer import HandlerContext
from shared.errors import CommandRefused


@handlers.on(RegisterAccount, loads=[ACCOUNT, PHONE, WALLET], keyed=True)
def register_account(command: RegisterAccount, ctx: HandlerContext) -> None:
    deps = ports(ctx)
    if ctx.read(ACCOUNT, command) is not None:
        raise CommandRefused("account_exists", f"account {command.account_id} is already registered")
    phone = normalize_phone(command.phone)
    if ctx.read(PHONE, command) is not None:
        raise CommandRefused("phone_in_use", "phone: already belongs to another account")
    region = deps.regions.get(command.country)
    password = deps.unsealer.open(command.password, purpose=Purpose.password(command.account_id), field="password")
    check_password_strength(password, account_id=command.account_id, phone=phone)
    account = Account(
        account_id=command.account_id,
        phone=phone,
        full_name=command.full_name,
        country=region.country,
        currency=region.currency,
        language=command.language,
        password_hash=deps.hasher.hash(password),
        known_countries=region.country,
    )
    ctx.add(ACCOUNTS, account)
    ctx.add(PHONE_CLAIMS, PhoneClaim(phone, command.account_id))
    wallet = ctx.read(WALLET, command)  # a sandbox top-up may have opened one before
    if wallet is None:
        ctx.add(WALLETS, Wallet.open(account.account_id, account.currency))
    elif wallet.balance.currency != account.currency:
        raise CommandRefused(
            "wallet_currency_conflict",
            f"account {account.account_id} already has a wallet in {wallet.balance.currency}; "
            f"region {account.country} pays in {account.currency}",
        )
    ctx.emit(
        AccountRegistered(
            account_id=account.account_id,
            phone_masked=mask_phone(phone),
            full_name=account.full_name,
            country=account.country,
            currency=account.currency,
            language=account.language,
            limits=region.limits_for(account.level),
            security_check_above=region.security_check_above,
            enhanced_verification_required=region.enhanced_verification_required,
            email=command.email,  # for the notification service's read copy (N2); the account keeps none
        )
    )
    _send_phone_code(ctx, account)


@handlers.on(ResendPhoneCode, loads=[ACCOUNT], keyed=True)
def resend_phone_code(command: ResendPhoneCode, ctx: HandlerContext) -> None:
    _send_phone_code(ctx, account_of(ctx, command))


def _send_phone_code(ctx: HandlerContext, account: Account) -> None:
    deps = ports(ctx)
    code = deps.hasher.phone_code(account.account_id, account.code_sequence + 1)
    sends_left = account.issue_phone_code(deps.hasher.digest("phone-code", code), ctx.now, deps.policy)
    minutes = int(deps.policy.phone_code_ttl.total_seconds() // 60)
    text = f"TradeGuard code: {code}. It expires in {minutes} minutes. Never share it."
    phone = account.phone
    ctx.after_commit(lambda: deps.sms.send(phone, text))  # only once the code's digest is stored
    assert account.phone_code_expires_at is not None
    ctx.emit(
        PhoneCodeSent(
            account_id=account.account_id,
            phone_masked=mask_phone(account.phone),
            expires_at=account.phone_code_expires_at,
            resends_left=sends_left,
        )
    )


@handlers.on(VerifyPhone, loads=[ACCOUNT], keyed=True)
def verify_phone(command: VerifyPhone, ctx: HandlerContext) -> None:
    deps = ports(ctx)
    account = account_of(ctx, command)
    code = deps.unsealer.open(command.code, purpose=Purpose.phone_code(command.account_id), field="code")
    result = account.check_phone_code(deps.hasher.digest("phone-code", code), ctx.now, deps.policy)
    if result is CodeCheck.ACCEPTED:
        announce(ctx, account, account.move_to(AccountStatus.ACTIVE, reason="phone verified", by=account.account_id))
        return
    details = {
        CodeCheck.WRONG: "the code is wrong; check the latest text and try again",
        CodeCheck.EXPIRED: "the code has expired; ask for a new one",
        CodeCheck.EXHAUSTED: "too many wrong codes; ask for a new one",
    }
    ctx.emit(
        PhoneVerificationFailed(
            account_id=account.account_id,
            reason=result.value,
            detail=details[result],
            attempts_left=account.attempts_left(deps.policy),
        )
    )


@handlers.on(SignIn, loads=[ACCOUNT], keyed=True)
def sign_in(command: SignIn, ctx: HandlerContext) -> None:
    account = account_of(ctx, command)
    account.check_open()
    if not check_password(ctx, account, command.password):
        ctx.refuse_keeping_changes(WRONG_PASSWORD)
        return
    if account.first_time_from(command.country):
        ctx.emit(
            SuspiciousActivityDetected(
                account_id=account.account_id,
                kind=SuspiciousActivity.NEW_COUNTRY_LOGIN,
                detail=f"first sign-in from {command.country}",
            )
        )
    ctx.emit(SignedIn(account_id=account.account_id, country=command.country))


@handlers.on(RestrictAccount, loads=[ACCOUNT], keyed=True)
def restrict_account(command: RestrictAccount, ctx: HandlerContext) -> None:
    account = account_of(ctx, command)
    announce(ctx, account, account.move_to(AccountStatus.RESTRICTED, reason=command.reason, by=command.operator_id))


@handlers.on(UnlockAccount, loads=[ACCOUNT], keyed=True)
def unlock_account(command: UnlockAccount, ctx: HandlerContext) -> None:
    """A6: an operator returns a locked (or restricted) account to active after review."""
    account = account_of(ctx, command)
    if account.status not in (AccountStatus.LOCKED, AccountStatus.RESTRICTED):
        raise CommandRefused("not_locked", f"account {account.account_id} is {account.status}, not locked")
    announce(ctx, account, account.move_to(AccountStatus.ACTIVE, reason=command.reason, by=command.operator_id))
    audit(ctx, account.account_id, "unlock", command.operator_id, command.reason)


@handlers.on(CloseAccount, loads=[ACCOUNT, WALLET], keyed=True)
def close_account(command: CloseAccount, ctx: HandlerContext) -> None:
    account = account_of(ctx, command)
    account.check_open()
    if not check_password(ctx, account, command.password):
        ctx.refuse_keeping_changes(WRONG_PASSWORD)
        return
    wallet = ctx.read(WALLET, command)
    if wallet is not None and wallet.balance.amount_minor > 0:
        raise CommandRefused(
            "balance_not_empty", f"wallet {account.account_id} holds {wallet.balance}; withdraw it before closing"
        )
    announce(ctx, account, account.move_to(AccountStatus.CLOSED, reason="closed by the holder", by=account.account_id))
