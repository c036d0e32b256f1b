"""A6: the holder's second factors, TOTP and the payment PIN."""

from __future__ import annotations

from contracts import EnrolTotp, PaymentPinSet, SetPaymentPin, TotpEnrolled
from contracts.sealing import Purpose
from services.account.domain.credentials import check_pin_format, check_totp_secret, totp_matches
from services.account.handlers import handlers
from services.account.handlers.common import ACCOUNT, WRONG_PASSWORD, account_of, audit, check_password
from services.account.ports import ports
from shared.consumer import HandlerContext
from shared.errors import CommandRefused


@handlers.on(EnrolTotp, loads=[ACCOUNT], keyed=True)
def enrol_totp(command: EnrolTotp, ctx: HandlerContext) -> None:
    deps = ports(ctx)
    account = account_of(ctx, command)
    account.check_open()
    secret = deps.unsealer.open(command.secret, purpose=Purpose.totp_secret(account.account_id), field="secret")
    code = deps.unsealer.open(command.code, purpose=Purpose.totp_code(account.account_id), field="code")
    check_totp_secret(secret)
    if not totp_matches(secret, code, ctx.now):
        raise CommandRefused("totp_code_wrong", "code: does not match the secret at this time; check the device clock")
    if not check_password(ctx, account, command.password):
        ctx.refuse_keeping_changes(WRONG_PASSWORD)
        return
    account.totp_secret_box = deps.lock_away(secret)
    audit(ctx, account.account_id, "totp_enrolled", account.account_id, "two-factor codes turned on")
    ctx.emit(TotpEnrolled(account_id=account.account_id))


@handlers.on(SetPaymentPin, loads=[ACCOUNT], keyed=True)
def set_payment_pin(command: SetPaymentPin, ctx: HandlerContext) -> None:
    deps = ports(ctx)
    account = account_of(ctx, command)
    account.check_open()
    pin = deps.unsealer.open(command.pin, purpose=Purpose.pin(account.account_id), field="pin")
    check_pin_format(pin)
    if not check_password(ctx, account, command.password):
        ctx.refuse_keeping_changes(WRONG_PASSWORD)
        return
    account.pin_hash = deps.hasher.hash(pin)
    audit(ctx, account.account_id, "pin_set", account.account_id, "payment PIN set")
    ctx.emit(PaymentPinSet(account_id=account.account_id))
