"""A4: cards and bank accounts, by token; a default source; removal."""

from __future__ import annotations

from contracts import (
    AddBankAccount,
    AddCard,
    DefaultFundingSourceChanged,
    FundingSourceAdded,
    FundingSourceRemoved,
    FundingType,
    RemoveFundingSource,
    SetDefaultFundingSource,
)
from services.account.domain.funding_sources import StoredSource, card_expired
from services.account.handlers import handlers
from services.account.handlers.common import ACCOUNT, SOURCE, account_of
from services.account.ports import ports
from services.account.store import FUNDING_SOURCES
from shared.consumer import HandlerContext
from shared.errors import CommandRefused


@handlers.on(AddCard, loads=[ACCOUNT, SOURCE], keyed=True)
def add_card(command: AddCard, ctx: HandlerContext) -> None:
    if card_expired(command.expiry_month, command.expiry_year, ctx.now.date()):
        raise CommandRefused(
            "card_expired", f"expiry: the card expired at the end of {command.expiry_month:02d}/{command.expiry_year}"
        )
    _add(
        ctx,
        command,
        StoredSource(
            account_id=command.account_id,
            source_id=command.source_id,
            type=FundingType.CARD,
            token=command.token,
            last4=command.last4,
            brand=command.brand,
            expiry_month=command.expiry_month,
            expiry_year=command.expiry_year,
        ),
    )


@handlers.on(AddBankAccount, loads=[ACCOUNT, SOURCE], keyed=True)
def add_bank_account(command: AddBankAccount, ctx: HandlerContext) -> None:
    _add(
        ctx,
        command,
        StoredSource(
            account_id=command.account_id,
            source_id=command.source_id,
            type=FundingType.BANK_ACCOUNT,
            token=command.token,
            last4=command.last4,
            country=command.country,
        ),
    )


def _add(ctx: HandlerContext, command: AddCard | AddBankAccount, source: StoredSource) -> None:
    account = account_of(ctx, command)
    account.check_open()
    region = ports(ctx).regions.get(account.country)
    if not region.allows(source.type):
        raise CommandRefused(
            "funding_type_not_allowed", f"{source.type.value} sources are not offered in region {account.country}"
        )
    existing = ctx.read(SOURCE, command)
    if existing is not None:
        existing.check_same(source)
        source = existing
    else:
        ctx.add(FUNDING_SOURCES, source)
    if account.default_source_id is None:
        account.default_source_id = source.source_id  # the first source is the default until changed
    ctx.emit(
        FundingSourceAdded(
            account_id=account.account_id,
            source=source.public(),
            is_default=account.default_source_id == source.source_id,
        )
    )


@handlers.on(SetDefaultFundingSource, loads=[ACCOUNT, SOURCE], keyed=True)
def set_default_source(command: SetDefaultFundingSource, ctx: HandlerContext) -> None:
    account = account_of(ctx, command)
    source = ctx.read(SOURCE, command)
    if source is None or source.removed_at is not None:
        raise CommandRefused("source_not_found", f"account {account.account_id} has no source {command.source_id}")
    account.default_source_id = source.source_id
    ctx.emit(DefaultFundingSourceChanged(account_id=account.account_id, source_id=source.source_id))


@handlers.on(RemoveFundingSource, loads=[ACCOUNT, SOURCE], keyed=True)
def remove_source(command: RemoveFundingSource, ctx: HandlerContext) -> None:
    account = account_of(ctx, command)
    source = ctx.read(SOURCE, command)
    if source is None:
        raise CommandRefused("source_not_found", f"account {account.account_id} has no source {command.source_id}")
    source.remove(ctx.now)
    if account.default_source_id == source.source_id:
        account.default_source_id = None
    ctx.emit(FundingSourceRemoved(account_id=account.account_id, source_id=source.source_id))
