"""Escrow rules: a double-entry ledger and per-order holds.

Every movement is a :class:`Transfer` between two ledger accounts, recorded as two
entries that sum to zero, so the books balance by construction.

A hold's life (E2, P6)::

    HoldFunds    -> held       buyer_wallet:<buyer>  -> escrow_holding   (the price)
    ReturnFunds  -> held       escrow_holding        -> refunds_out:<buyer>  (part of it, per refund)
                 -> returned   when nothing is left held (terminal)
    ReleaseFunds -> released   escrow_holding        -> seller_payable:<seller>  (what is still held; terminal)
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


def refunds_out(buyer_id: str) -> str:
    """What is owed back to a buyer: a refund's part of a hold, out of escrow, which the
    payment service pays back to the buyer's sources (P6)."""
    return f"refunds_out:{buyer_id}"


def seller_payable(seller_id: str) -> str:
    """What the platform owes a seller after release (E4)."""
    return f"seller_payable:{seller_id}"


class HoldStatus(StrEnum):
    HELD = "held"
    RELEASED = "released"  # what was still held went to the seller
    RETURNED = "returned"  # every unit went back to the buyer (P6)


class EscrowRuleBroken(CommandRefused):
    """An escrow command that the rules forbid."""


_TRANSFERS = uuid.UUID("6f1c9a52-8d3e-4b7a-9c2e-1d5f0a7b3e64")


@dataclass(frozen=True, slots=True)
class Transfer:
    """Move ``amount`` from one ledger account to another, for one order (and, for a return,
    one refund: ``reference``)."""

    order_id: str
    from_account: str
    to_account: str
    amount: Money
    reference: str = ""

    @property
    def transfer_id(self) -> str:
        """The same transfer always gets the same id: one per order, source and destination, and
        per reference when there is one (an order returns funds once per refund)."""
        name = f"{self.order_id}|{self.from_account}|{self.to_account}"
        return str(uuid.uuid5(_TRANSFERS, f"{name}|{self.reference}" if self.reference else name))

    def entries(self) -> list[dict[str, object]]:
        """The two ledger entries, which sum to zero."""
        common = {"transfer_id": self.transfer_id, "order_id": self.order_id, "currency": self.amount.currency}
        return [
            {**common, "account": self.from_account, "amount_minor": -self.amount.amount_minor},
            {**common, "account": self.to_account, "amount_minor": self.amount.amount_minor},
        ]


@dataclass(slots=True)
class FundsReturn:
    """One refund's part of a hold, given back once: a repeat of its refund id gets this again."""

    order_id: str
    refund_id: str
    amount: Money
    still_held: Money  # what the hold kept after it

    def check_same_request(self, amount: Money) -> None:
        """P5: the same refund id with another amount is refused."""
        if amount != self.amount:
            raise EscrowRuleBroken(
                "idempotency_conflict",
                f"refund {self.refund_id} of order {self.order_id} already took {self.amount} back, not {amount}",
            )


@dataclass(slots=True)
class EscrowHold:
    """Funds held for one order until the buyer confirms receipt, less what refunds took back."""

    order_id: str
    buyer_id: str
    seller_id: str
    amount: Money
    status: HoldStatus = HoldStatus.HELD
    returned_minor: int = 0  # of the amount, given back for refunds

    @classmethod
    def place(cls, order_id: str, buyer_id: str, seller_id: str, amount: Money) -> tuple[EscrowHold, Transfer]:
        if amount.amount_minor <= 0:
            raise EscrowRuleBroken("invalid_amount", f"order {order_id}: an escrow hold needs a positive amount")
        hold = cls(order_id, buyer_id, seller_id, amount)
        return hold, Transfer(order_id, buyer_funds(buyer_id), ESCROW_HOLDING, amount)

    @property
    def still_held(self) -> Money:
        """What the hold keeps for the seller: the amount less what was returned (once
        released, what the seller was paid)."""
        return Money(amount_minor=self.amount.amount_minor - self.returned_minor, currency=self.amount.currency)

    def check_same_request(self, buyer_id: str, seller_id: str, amount: Money) -> None:
        if (buyer_id, seller_id, amount) != (self.buyer_id, self.seller_id, self.amount):
            raise EscrowRuleBroken("idempotency_conflict", f"order {self.order_id} is already held with other details")

    def release(self) -> Transfer | None:
        """Release what is still held to the seller; None when already released (a repeat)."""
        if self.status is HoldStatus.RELEASED:
            return None
        self._check_held("released to the seller")
        self.status = HoldStatus.RELEASED
        return Transfer(self.order_id, ESCROW_HOLDING, seller_payable(self.seller_id), self.still_held)

    def give_back(self, refund_id: str, amount: Money) -> tuple[FundsReturn, Transfer]:
        """Take ``amount`` out of the hold for refund ``refund_id`` (a new one: repeats are the
        handler's); the hold is returned once nothing is left."""
        self._check_held("given back")
        if amount.currency != self.amount.currency:
            raise EscrowRuleBroken(
                "currency_mismatch",
                f"order {self.order_id} is held in {self.amount.currency}; {amount.currency} cannot be given back",
            )
        if amount.amount_minor <= 0:
            raise EscrowRuleBroken("invalid_amount", f"order {self.order_id}: a return needs a positive amount")
        held = self.still_held
        if amount.amount_minor > held.amount_minor:
            raise EscrowRuleBroken(
                "exceeds_held",
                f"order {self.order_id} holds {held}; {amount} cannot be given back",
            )
        self.returned_minor += amount.amount_minor
        if self.returned_minor == self.amount.amount_minor:
            self.status = HoldStatus.RETURNED
        given = FundsReturn(self.order_id, refund_id, amount, self.still_held)
        return given, Transfer(self.order_id, ESCROW_HOLDING, refunds_out(self.buyer_id), amount, reference=refund_id)

    def _check_held(self, what: str) -> None:
        if self.status is not HoldStatus.HELD:
            raise EscrowRuleBroken(
                "not_held", f"order {self.order_id}'s hold is {self.status.value}: nothing can be {what}"
            )


def hold_not_found(order_id: str) -> EscrowRuleBroken:
    return EscrowRuleBroken("hold_not_found", f"order {order_id} has no escrow hold")
