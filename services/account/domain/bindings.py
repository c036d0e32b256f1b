"""Marketplace binding (A5): the buyer lets one marketplace account charge the wallet, for
some scopes, until a time; revocable, and re-grantable."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from contracts import BindingScope, DeclineReason
from services.account.domain.accounts import Account
from services.account.domain.credentials import normalized_name
from services.account.domain.errors import PaymentDeclined
from shared.errors import CommandRefused


@dataclass(slots=True)
class MarketplaceGrant:
    """Keyed by (account, marketplace)."""

    account_id: str
    marketplace_id: str
    scopes: str  # comma-separated BindingScope values
    expires_at: datetime
    granted_at: datetime
    revoked_at: datetime | None = None

    @property
    def scope_set(self) -> frozenset[BindingScope]:
        return frozenset(BindingScope(s) for s in self.scopes.split(",") if s)

    def regrant(self, scopes: list[BindingScope], expires_at: datetime, now: datetime) -> None:
        self.scopes = ",".join(sorted({s.value for s in scopes}))
        self.expires_at, self.granted_at, self.revoked_at = expires_at, now, None

    def revoke(self, now: datetime) -> None:
        if self.revoked_at is not None:
            raise CommandRefused("binding_missing", f"marketplace {self.marketplace_id} holds no live grant")
        self.revoked_at = now

    def check_allows(self, scope: BindingScope, now: datetime) -> None:
        """A charge needs a live grant with its scope."""
        if self.revoked_at is not None:
            raise binding_missing(self.account_id, self.marketplace_id, "the buyer revoked it")
        if now >= self.expires_at:
            raise PaymentDeclined(
                DeclineReason.BINDING_EXPIRED,
                f"the grant of account {self.account_id} to marketplace {self.marketplace_id} "
                f"expired at {self.expires_at.isoformat()}; the buyer must grant it again",
            )
        if scope not in self.scope_set:
            raise binding_missing(self.account_id, self.marketplace_id, f"it does not include '{scope}'")


def binding_missing(account_id: str, marketplace_id: str, why: str) -> PaymentDeclined:
    return PaymentDeclined(
        DeclineReason.BINDING_MISSING,
        f"marketplace {marketplace_id} may not charge account {account_id}: {why}; "
        "the buyer must bind the wallet to the marketplace first",
    )


def check_profile_matches(account: Account, profile_legal_name: str, profile_country: str) -> None:
    """A grant is refused when the marketplace profile is not the same person, naming the field."""
    wallet_name = account.legal_name or account.full_name
    if normalized_name(profile_legal_name) != normalized_name(wallet_name):
        raise CommandRefused(
            "binding_name_mismatch",
            "legal_name: the marketplace profile's legal name differs from the wallet account's",
        )
    if profile_country != account.country:
        raise CommandRefused(
            "binding_country_mismatch",
            f"country: the marketplace profile is in {profile_country}, the wallet account in {account.country}",
        )


def check_expiry_ahead(expires_at: datetime, now: datetime) -> None:
    if expires_at <= now:
        raise CommandRefused("invalid_expiry", "expires_at: must be in the future")
