"""Escrow rules: a double-entry ledger and per-order holds.

Every movement is a :class:`Transfer` between two ledger accounts, recorded as two
entries that sum to zero, so the books balance by construction.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from enum import StrEnum

from contracts import Money
from shared.errors import CommandRefused

ESCROW_HOLDING = "escrow_holding"


def buyer_funds(buyer_id: str) -> str:
    """Where captured buyer money comes from (the buyer's side of the wallet)."""
    return f"buyer_wallet:{buyer_id}"


def seller_payable(seller_id: str) -> str:
    """What the platform owes a seller after release (E4)."""
    return f"seller_payable:{seller_id}"


class HoldStatus(StrEnum):
    HELD = "held"
    RELEASED = "released"


class EscrowRuleBroken(CommandRefused):
    """An escrow command that the rules forbid."""


_TRANSFERS = uuid.UUID("6f1c9a52-8d3e-4b7a-9c2e-1d5f0a7b3e64")


@dataclass(frozen=True, slots=True)
class Transfer:
    """Move ``amount`` from one ledger account to another, for one order."""

    order_id: str
    from_account: str
    to_account: str
    amount: Money

    @property
    def transfer_id(self) -> str:
        """The same transfer always gets the same id (one per order, source and destination)."""
        return str(uuid.uuid5(_TRANSFERS, f"{self.order_id}|{self.from_account}|{self.to_account}"))

    def entries(self) -> list[dict[str, object]]:
        """The two ledger entries, which sum to zero."""
        common = {"transfer_id": self.transfer_id, "order_id": self.order_id, "currency": self.amount.currency}
        return [
            {**common, "account": self.from_account, "amount_minor": -self.amount.amount_minor},
            {**common, "account": self.to_account, "amount_minor": self.amount.amount_minor},
        ]


@dataclass(slots=True)
class EscrowHold:
    """Funds held for one order until the buyer confirms receipt."""

    order_id: str
    buyer_id: str
    seller_id: str
    amount: Money
    status: HoldStatus = HoldStatus.HELD

    @classmethod
    def place(cls, order_id: str, buyer_id: str, seller_id: str, amount: Money) -> tuple[EscrowHold, Transfer]:
        if amount.amount_minor <= 0:
            raise EscrowRuleBroken("invalid_amount", f"order {order_id}: an escrow hold needs a positive amount")
        hold = cls(order_id, buyer_id, seller_id, amount)
        return hold, Transfer(order_id, buyer_funds(buyer_id), ESCROW_HOLDING, amount)

    def check_same_request(self, buyer_id: str, seller_id: str, amount: Money) -> None:
        if (buyer_id, seller_id, amount) != (self.buyer_id, self.seller_id, self.amount):
            raise EscrowRuleBroken("idempotency_conflict", f"order {self.order_id} is already held with other details")

    def release(self) -> Transfer | None:
        """Release to the seller; None when already released (a repeat)."""
        if self.status is HoldStatus.RELEASED:
            return None
        self.status = HoldStatus.RELEASED
        return Transfer(self.order_id, ESCROW_HOLDING, seller_payable(self.seller_id), self.amount)


def hold_not_found(order_id: str) -> EscrowRuleBroken:
    return EscrowRuleBroken("hold_not_found", f"order {order_id} has no escrow hold to release")
