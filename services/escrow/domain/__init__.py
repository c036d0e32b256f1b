"""Escrow rules, one module per concern: ``holds`` (per-order holds and their transfers)."""

from services.escrow.domain.holds import (
    ESCROW_HOLDING,
    EscrowHold,
    EscrowRuleBroken,
    FundsReturn,
    HoldStatus,
    Transfer,
    buyer_funds,
    hold_not_found,
    refunds_out,
    seller_payable,
)

__all__ = [
    "ESCROW_HOLDING",
    "EscrowHold",
    "EscrowRuleBroken",
    "FundsReturn",
    "HoldStatus",
    "Transfer",
    "buyer_funds",
    "hold_not_found",
    "refunds_out",
    "seller_payable",
]
