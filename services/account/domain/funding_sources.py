"""Funding sources (A4): cards and bank accounts, known only by token, brand and last four."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from contracts import CardBrand, DeclineReason, FundingSource, FundingType
from services.account.domain.errors import PaymentDeclined
from shared.errors import CommandRefused


def card_expired(expiry_month: int, expiry_year: int, today: date) -> bool:
    """A card is good through the last day of its expiry month."""
    return (today.year, today.month) > (expiry_year, expiry_month)


@dataclass(slots=True)
class StoredSource:
    """A source of one account; keyed by (account, source id). Removal keeps the row, so a
    payment naming a removed source fails as removed, not as unknown."""

    account_id: str
    source_id: str
    type: FundingType
    token: str
    last4: str
    brand: CardBrand | None = None
    expiry_month: int | None = None
    expiry_year: int | None = None
    country: str | None = None
    removed_at: datetime | None = None

    def public(self) -> FundingSource:
        return FundingSource(
            source_id=self.source_id,
            type=self.type,
            brand=self.brand,
            last4=self.last4,
            expiry_month=self.expiry_month,
            expiry_year=self.expiry_year,
        )

    def expired(self, today: date) -> bool:
        if self.expiry_month is None or self.expiry_year is None:
            return False
        return card_expired(self.expiry_month, self.expiry_year, today)

    def check_same(self, other: StoredSource) -> None:
        """Adding the same source id again must describe the same source."""
        if (self.type, self.token, self.last4) != (other.type, other.token, other.last4) or self.removed_at:
            raise CommandRefused(
                "source_exists", f"account {self.account_id} already has a source named {self.source_id}"
            )

    def remove(self, now: datetime) -> None:
        if self.removed_at is not None:
            raise CommandRefused("source_removed", f"source {self.source_id} was already removed")
        self.removed_at = now

    def check_usable(self, today: date) -> None:
        """A payment from a removed or expired source fails with that source's own reason."""
        if self.removed_at is not None:
            raise PaymentDeclined(
                DeclineReason.SOURCE_REMOVED,
                f"source {self.source_id} ({self.describe()}) was removed; choose another source",
            )
        if self.expired(today):
            raise PaymentDeclined(
                DeclineReason.SOURCE_EXPIRED,
                f"card {self.describe()} expired at the end of {self.expiry_month:02d}/{self.expiry_year}; "
                "add a current card or pay from the wallet",
            )

    def describe(self) -> str:
        if self.type is FundingType.CARD and self.brand is not None:
            return f"{self.brand.value} ending {self.last4}"
        return f"bank account ending {self.last4}"


def unknown_source(account_id: str, source_id: str) -> PaymentDeclined:
    return PaymentDeclined(
        DeclineReason.SOURCE_NOT_FOUND, f"account {account_id} has no funding source named {source_id}"
    )
