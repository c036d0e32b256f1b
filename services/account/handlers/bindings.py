"""A5: the buyer grants a marketplace the right to charge the wallet, and revokes it."""

from __future__ import annotations

from contracts import (
    GrantMarketplaceAccess,
    MarketplaceAccessGranted,
    MarketplaceAccessRevoked,
    RevokeMarketplaceAccess,
)
from services.account.domain.bindings import MarketplaceGrant, check_expiry_ahead, check_profile_matches
from services.account.handlers import handlers
from services.account.handlers.common import ACCOUNT, GRANT, WRONG_PASSWORD, account_of, audit, check_password
from services.account.store import GRANTS
from shared.consumer import HandlerContext
from shared.errors import CommandRefused


@handlers.on(GrantMarketplaceAccess, loads=[ACCOUNT, GRANT], keyed=True)
def grant_access(command: GrantMarketplaceAccess, ctx: HandlerContext) -> None:
    account = account_of(ctx, command)
    account.check_open()
    check_profile_matches(account, command.profile_legal_name, command.profile_country)
    check_expiry_ahead(command.expires_at, ctx.now)
    if not check_password(ctx, account, command.password):
        ctx.refuse_keeping_changes(WRONG_PASSWORD)
        return
    scopes = sorted(set(command.scopes))
    grant = ctx.read(GRANT, command)
    if grant is None:
        grant = ctx.add(
            GRANTS,
            MarketplaceGrant(
                account_id=account.account_id,
                marketplace_id=command.marketplace_id,
                scopes=",".join(s.value for s in scopes),
                expires_at=command.expires_at,
                granted_at=ctx.now,
            ),
        )
    else:
        grant.regrant(scopes, command.expires_at, ctx.now)
    audit(ctx, account.account_id, "grant", account.account_id, f"{command.marketplace_id}: {grant.scopes}")
    ctx.emit(
        MarketplaceAccessGranted(
            account_id=account.account_id,
            marketplace_id=command.marketplace_id,
            scopes=scopes,
            expires_at=grant.expires_at,
        )
    )


@handlers.on(RevokeMarketplaceAccess, loads=[ACCOUNT, GRANT], keyed=True)
def revoke_access(command: RevokeMarketplaceAccess, ctx: HandlerContext) -> None:
    account = account_of(ctx, command)
    grant = ctx.read(GRANT, command)
    if grant is None:
        raise CommandRefused("binding_missing", f"marketplace {command.marketplace_id} holds no grant of this account")
    if not check_password(ctx, account, command.password):
        ctx.refuse_keeping_changes(WRONG_PASSWORD)
        return
    grant.revoke(ctx.now)
    audit(ctx, account.account_id, "revoke", account.account_id, command.marketplace_id)
    ctx.emit(MarketplaceAccessRevoked(account_id=account.account_id, marketplace_id=command.marketplace_id))
