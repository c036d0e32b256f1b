"""Escrow rules, one module per concern: ``ledger`` (E1, the pure two-phase ledger), ``holds``
(E2/E3/E4: per-order holds, their dispute freeze and the transfers they book), ``books`` (ledger
accounts as stored rows and the ledger view a command goes through), ``settlements`` (E4: the
report per seller and day)."""

from services.escrow.domain.books import AccountState, settle, view
from services.escrow.domain.holds import (
    ORDER_ACCOUNT_KINDS,
    EscrowHold,
    EscrowRuleBroken,
    FundsReturn,
    HoldStatus,
    buyer_currency,
    buyer_funds,
    escrow_holding,
    hold_not_found,
    refunds_out,
    seller_payable,
)

__all__ = [
    "ORDER_ACCOUNT_KINDS",
    "AccountState",
    "EscrowHold",
    "EscrowRuleBroken",
    "FundsReturn",
    "HoldStatus",
    "buyer_currency",
    "buyer_funds",
    "escrow_holding",
    "hold_not_found",
    "refunds_out",
    "seller_payable",
    "settle",
    "view",
]
