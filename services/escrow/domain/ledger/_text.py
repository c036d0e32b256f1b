"""How the ledger writes figures and times into its messages (shared by its modules)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from contracts.money import minor_unit_exponent

if TYPE_CHECKING:
    from services.escrow.domain.ledger.accounts import AccountBalance
    from services.escrow.domain.ledger.transfers import TransferRecord


def is_due(record: TransferRecord, now: datetime) -> bool:
    return record.expires_at is not None and record.expires_at <= now


def timeout_order(record: TransferRecord) -> tuple[datetime, int]:
    assert record.expires_at is not None
    return record.expires_at, record.seq


def totals(balance: AccountBalance) -> str:
    return (
        f"debits {balance.debits_pending} pending/{balance.debits_posted} posted, "
        f"credits {balance.credits_pending} pending/{balance.credits_posted} posted"
    )


def show(minor: int, currency: str) -> str:
    """``25.00 USD``: minor units in major units with the currency's digits (negative allowed)."""
    return f"{Decimal(minor).scaleb(-minor_unit_exponent(currency))} {currency}"


def require_aware(moment: datetime, name: str) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime, not naive {moment.isoformat()}")
