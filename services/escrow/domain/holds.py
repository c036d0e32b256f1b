"""Escrow E2 (and E4): per-order holds, booked as two-phase transfers of the E1 ledger.

A hold owns three ledger accounts of its order, all in the seller's currency ``S``:
``escrow_holding:<order>:S`` (what the platform holds), ``seller_payable:<order>:S`` (what the
platform owes the seller for this order) and ``refunds_out:<order>:S`` (what went back to the
buyer, which the payment service pays back, P6). They are keyed by the order, not by the
seller or buyer, because ReleaseFunds and ReturnFunds name only the order: the batch loads
what a command touches from the command alone. A seller's payable is the sum over their
orders (the hold names the seller: ``GET /settlements``), and one seller's orders never
contend for one row.

**The model.** The seller's payout is a *pending* transfer, the reservation, from the
holding to the seller payable: it reserves what is still held and ends exactly once.

=============  ===========================================================  ================
command        transfers (one linked set each: all or none)                 hold after
=============  ===========================================================  ================
HoldFunds      ``buyer_funds_in:<buyer>:S -> escrow_holding`` the price;    held
               pending ``escrow_holding -> seller_payable`` the price
ReleaseFunds   post the reservation (the seller payable is posted)          released (final)
ReturnFunds    void the reservation; ``escrow_holding -> refunds_out`` the  held, or returned
               refund's part; pending ``escrow_holding -> seller_payable``  (final) when
               what is left (none when nothing is)                          nothing is left
=============  ===========================================================  ================

**E4, another currency.** With a breakdown whose total is in the buyer's currency ``B`` (not
``S``), HoldFunds books the buyer's total in ``B`` against the platform and the settlement in
``S`` into the holding, through the FX position of each currency, so that every currency sums
to zero on its own: ``buyer_funds_in:<buyer>:B -> fee_revenue:platform:B`` the fee,
``buyer_funds_in:<buyer>:B -> fx_position:platform:B`` the rest of the total,
``fx_position:platform:S -> escrow_holding:<order>:S`` the settlement, then the reservation of
the settlement. (A discount larger than the converted price leaves less than the fee: the fee
revenue is then what the buyer paid.) Refunds and the release move ``S`` only.

**Worked example.** Order o1, 42.50 USD, paid by a Japanese buyer b1 6,512 JPY (6,263
converted + 249 fee); a refund r1 of 10.00 USD, then the release::

    HoldFunds     buyer_funds_in:b1:JPY   -> fee_revenue:platform:JPY     249 JPY
                  buyer_funds_in:b1:JPY   -> fx_position:platform:JPY   6,263 JPY
                  fx_position:platform:USD -> escrow_holding:o1:USD     42.50 USD
                  escrow_holding:o1:USD   -> seller_payable:o1:USD      42.50 USD pending
    ReturnFunds   void that reservation                                (42.50 USD released)
                  escrow_holding:o1:USD   -> refunds_out:o1:USD         10.00 USD
                  escrow_holding:o1:USD   -> seller_payable:o1:USD      32.50 USD pending
    ReleaseFunds  post it: seller_payable:o1:USD credits posted 32.50; escrow_holding:o1:USD
                  credits 42.50 = debits 10.00 + 32.50: empty. JPY: 6,512 debited = 6,512
                  credited; USD: 42.50 = 42.50.

**E3, a dispute's freeze.** FreezeFunds marks a held hold frozen by one dispute; no transfer
moves (the reservation stays as it is). While frozen, only that dispute's resolution may take
money out: ReturnFunds and ReleaseFunds carrying its ``dispute_id``. A split is a return of the
buyer's part (the hold stays frozen) then a release of the rest; a full refund is a return of
all that is held. The freeze ends with the hold (released or returned); ``frozen_by`` and
``frozen_at`` stay on it as the record of which dispute decided it.

=====================  =========================  ============================================
command                hold not frozen            hold frozen by dispute D
=====================  =========================  ============================================
FreezeFunds D          frozen by D                the same again (a repeat, nothing changes)
FreezeFunds E          frozen by E                ``hold_frozen``
ReleaseFunds           released                   ``hold_frozen``
ReleaseFunds D         ``not_frozen``             released; the freeze ends
ReleaseFunds E         ``not_frozen``             ``hold_frozen``
ReturnFunds            returned                   ``hold_frozen``
ReturnFunds D          ``not_frozen``             returned; still frozen unless nothing is left
=====================  =========================  ============================================

(On an ended hold every command is ``not_held``, but for a repeat of its release: with no
dispute, or with the one that froze it; another dispute's ReleaseFunds is ``not_frozen``.)

**Refusals** (a refused command changes nothing): ``hold_not_found``, ``not_held`` (released
or returned), ``hold_frozen`` (frozen by a dispute other than the command's, or the command
names none), ``not_frozen`` (a dispute's resolution on a hold that dispute did not freeze),
``currency_mismatch``, ``invalid_amount``, ``exceeds_held``, ``idempotency_conflict`` (the same
order or refund with other details), ``invalid_breakdown`` (a breakdown that is not this hold's
price), ``invalid_party`` (an id the ledger cannot name an account by); and whatever the ledger
itself refuses (a flag, an ended reservation), since every transfer goes through it. A repeat
of a command that was applied moves no money and answers the same event again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from contracts import Money, PriceBreakdown
from services.escrow.domain.ledger import (
    AccountId,
    AccountKind,
    Transfer,
    TransferCode,
    TransferKind,
    TransferRecord,
)
from shared.errors import CommandRefused

ORDER_ACCOUNT_KINDS = (AccountKind.ESCROW_HOLDING, AccountKind.SELLER_PAYABLE, AccountKind.REFUNDS_OUT)
"""The kinds of account a hold owns, one each per order (in the seller's currency)."""


class HoldStatus(StrEnum):
    HELD = "held"
    RELEASED = "released"  # what was still held went to the seller
    RETURNED = "returned"  # every unit went back to the buyer (P6)


class EscrowRuleBroken(CommandRefused):
    """An escrow command that the rules forbid."""


def account_or_refuse(kind: AccountKind, owner: str, currency: str) -> AccountId:
    """The ledger account ``kind:owner:currency``, or a refusal naming the id that cannot be one."""
    try:
        return AccountId(kind, owner, currency)
    except ValueError as error:
        raise EscrowRuleBroken("invalid_party", f"no ledger account can be named by {owner!r}: {error}") from None


def buyer_funds(buyer_id: str, currency: str) -> AccountId:
    """Where captured buyer money comes from (the buyer's side of the payment)."""
    return account_or_refuse(AccountKind.BUYER_FUNDS_IN, buyer_id, currency)


def escrow_holding(order_id: str, currency: str) -> AccountId:
    return account_or_refuse(AccountKind.ESCROW_HOLDING, order_id, currency)


def seller_payable(order_id: str, currency: str) -> AccountId:
    """What the platform owes the seller of ``order_id`` once released (E4)."""
    return account_or_refuse(AccountKind.SELLER_PAYABLE, order_id, currency)


def refunds_out(order_id: str, currency: str) -> AccountId:
    """What of ``order_id``'s hold went back to its buyer, for the payment service to pay (P6)."""
    return account_or_refuse(AccountKind.REFUNDS_OUT, order_id, currency)


def buyer_currency(amount: Money, breakdown: PriceBreakdown | None) -> str:
    """The currency the buyer paid in: the breakdown's total's, else the price's."""
    return amount.currency if breakdown is None else breakdown.total.currency


@dataclass(slots=True)
class FundsReturn:
    """One refund's part of a hold, given back once: a repeat of its refund id gets this again."""

    order_id: str
    refund_id: str
    amount: Money
    still_held: Money  # what the hold kept after it
    dispute_id: str | None = None  # E3: the dispute whose resolution it carried out

    def check_same_request(self, amount: Money, dispute_id: str | None = None) -> None:
        """P5: the same refund id with another amount, or for another dispute, is refused."""
        if amount != self.amount:
            raise EscrowRuleBroken(
                "idempotency_conflict",
                f"refund {self.refund_id} of order {self.order_id} already took {self.amount} back, not {amount}",
            )
        if dispute_id != self.dispute_id:
            raise EscrowRuleBroken(
                "idempotency_conflict",
                f"refund {self.refund_id} of order {self.order_id} was given back for {_dispute(self.dispute_id)}, "
                f"not for {_dispute(dispute_id)}",
            )


@dataclass(slots=True)
class EscrowHold:
    """Funds held for one order until the buyer confirms receipt, less what refunds took back.

    ``reservation_id`` is the open pending transfer reserving what is still held for the
    seller (None once released or returned); ``reserved_at`` when it was applied.
    ``frozen_by`` is the dispute that froze the hold (E3) and ``frozen_at`` since when; they stay
    once the hold has ended, as the record of which dispute's resolution ended it.
    """

    order_id: str
    buyer_id: str
    seller_id: str
    amount: Money
    status: HoldStatus = HoldStatus.HELD
    returned_minor: int = 0  # of the amount, given back for refunds
    reservation_id: str | None = None
    reserved_at: datetime | None = None
    frozen_by: str | None = None
    frozen_at: datetime | None = None

    # ------------------------------------------------------------------ placing

    @classmethod
    def place(
        cls,
        order_id: str,
        buyer_id: str,
        seller_id: str,
        amount: Money,
        *,
        breakdown: PriceBreakdown | None,
        now: datetime,
    ) -> tuple[EscrowHold, list[Transfer]]:
        """A new hold and its linked set: the buyer's money in, then the seller's reservation."""
        if amount.amount_minor <= 0:
            raise EscrowRuleBroken("invalid_amount", f"order {order_id}: an escrow hold needs a positive amount")
        _check_breakdown(order_id, amount, breakdown)
        # The seller is settled under their id (E4): an id the ledger cannot name is refused
        # now, before any money moves in escrow, not at release.
        account_or_refuse(AccountKind.SELLER_PAYABLE, seller_id, amount.currency)
        hold = cls(order_id, buyer_id, seller_id, amount)
        money_in = _money_in(order_id, buyer_id, amount, breakdown)
        reservation = hold._reserve(f"hold:{order_id}:reserve", amount, now)
        return hold, [*money_in, reservation]

    def check_same_request(self, buyer_id: str, seller_id: str, amount: Money) -> None:
        if (buyer_id, seller_id, amount) != (self.buyer_id, self.seller_id, self.amount):
            raise EscrowRuleBroken("idempotency_conflict", f"order {self.order_id} is already held with other details")

    # ------------------------------------------------------------------ reading

    @property
    def still_held(self) -> Money:
        """What the hold keeps for the seller: the amount less what was returned (once
        released, what the seller was paid)."""
        return Money(amount_minor=self.amount.amount_minor - self.returned_minor, currency=self.amount.currency)

    @property
    def frozen(self) -> bool:
        """Frozen by a dispute now: held, and a dispute froze it (the freeze ends with the hold)."""
        return self.status is HoldStatus.HELD and self.frozen_by is not None

    @property
    def holding(self) -> AccountId:
        return escrow_holding(self.order_id, self.amount.currency)

    @property
    def payable(self) -> AccountId:
        return seller_payable(self.order_id, self.amount.currency)

    def reservation(self) -> TransferRecord | None:
        """The open reservation as the log holds it (for a ledger view), None when there is none."""
        if self.reservation_id is None or self.reserved_at is None:
            return None
        pending = Transfer(
            self.reservation_id,
            self.holding,
            self.payable,
            self.still_held,
            self.order_id,
            TransferCode.HOLD,
            TransferKind.PENDING,
        )
        # seq -1: the record is in the stored log, before anything a view applies.
        return TransferRecord.of(pending, -1, self.reserved_at, None)

    # ------------------------------------------------------------------ freezing (E3)

    def freeze(self, dispute_id: str, now: datetime) -> bool:
        """Freeze the hold for ``dispute_id``; False for a repeat of that freeze (nothing changes).
        No transfer: the reservation stays, and only this dispute's resolution may end it."""
        if self.frozen and self.frozen_by == dispute_id:
            return False
        self._check_held("frozen")
        if self.frozen_by is not None:
            raise EscrowRuleBroken(
                "hold_frozen", f"{self._frozen_text()}: dispute {dispute_id} cannot freeze it as well"
            )
        self.frozen_by, self.frozen_at = dispute_id, now
        return True

    # ------------------------------------------------------------------ ending

    def release(self, dispute_id: str | None = None) -> list[Transfer] | None:
        """Post the reservation to the seller; None when already released (a repeat: with no
        dispute, or with the dispute that froze it). Frozen, only with the freezing dispute's id."""
        if self.status is HoldStatus.RELEASED:
            if dispute_id is not None and dispute_id != self.frozen_by:
                raise EscrowRuleBroken(
                    "not_frozen", f"order {self.order_id}'s hold is released and was never frozen by {dispute_id}"
                )
            return None
        self._check_held("released to the seller")
        self._check_resolution(dispute_id, "released")
        post = self._open_reservation().transfer.post(f"release:{self.order_id}")
        self.status = HoldStatus.RELEASED
        self.reservation_id = self.reserved_at = None
        return [post]

    def give_back(
        self, refund_id: str, amount: Money, now: datetime, dispute_id: str | None = None
    ) -> tuple[FundsReturn, list[Transfer]]:
        """Take ``amount`` out of the hold for refund ``refund_id`` (a new one: repeats are the
        handler's): void the reservation, return the part, reserve what is left. Frozen, only
        for the freezing dispute (its refund); the hold stays frozen while anything is left."""
        self._check_held("given back")
        self._check_resolution(dispute_id, "given back")
        self._check_return(amount)
        void = self._open_reservation().transfer.void(f"return:{self.order_id}:{refund_id}:void")
        give = Transfer(
            f"return:{self.order_id}:{refund_id}",
            self.holding,
            refunds_out(self.order_id, self.amount.currency),
            amount,
            self.order_id,
            TransferCode.REFUND,
        )
        self.returned_minor += amount.amount_minor
        transfers = [void, give]
        if self.returned_minor == self.amount.amount_minor:
            self.status = HoldStatus.RETURNED
            self.reservation_id = self.reserved_at = None
        else:
            transfers.append(self._reserve(f"return:{self.order_id}:{refund_id}:reserve", self.still_held, now))
        return FundsReturn(self.order_id, refund_id, amount, self.still_held, dispute_id), transfers

    # ------------------------------------------------------------------ rules

    def _check_resolution(self, dispute_id: str | None, what: str) -> None:
        """Frozen: only the freezing dispute's resolution; not frozen: no dispute's at all."""
        if self.frozen_by is not None and dispute_id != self.frozen_by:
            by = "without a dispute" if dispute_id is None else f"for dispute {dispute_id}"
            raise EscrowRuleBroken(
                "hold_frozen",
                f"{self._frozen_text()}: nothing can be {what} {by}, only by the resolution of {self.frozen_by}",
            )
        if self.frozen_by is None and dispute_id is not None:
            raise EscrowRuleBroken(
                "not_frozen",
                f"order {self.order_id}'s hold is not frozen by dispute {dispute_id}: "
                "a dispute's resolution applies only to a hold that dispute froze",
            )

    def _frozen_text(self) -> str:
        since = "" if self.frozen_at is None else f" since {self.frozen_at.isoformat()}"
        return f"order {self.order_id}'s hold is frozen by dispute {self.frozen_by}{since}"

    def _reserve(self, transfer_id: str, amount: Money, now: datetime) -> Transfer:
        self.reservation_id, self.reserved_at = transfer_id, now
        return Transfer(
            transfer_id, self.holding, self.payable, amount, self.order_id, TransferCode.HOLD, TransferKind.PENDING
        )

    def _open_reservation(self) -> TransferRecord:
        reservation = self.reservation()
        if reservation is None:  # held always has one: a hold stored without it is damage
            raise RuntimeError(f"order {self.order_id} is held without a reservation")
        return reservation

    def _check_return(self, amount: Money) -> None:
        if amount.currency != self.amount.currency:
            raise EscrowRuleBroken(
                "currency_mismatch",
                f"order {self.order_id} is held in {self.amount.currency}; {amount.currency} cannot be given back",
            )
        if amount.amount_minor <= 0:
            raise EscrowRuleBroken("invalid_amount", f"order {self.order_id}: a return needs a positive amount")
        held = self.still_held
        if amount.amount_minor > held.amount_minor:
            raise EscrowRuleBroken("exceeds_held", f"order {self.order_id} holds {held}; {amount} cannot be given back")

    def _check_held(self, what: str) -> None:
        if self.status is not HoldStatus.HELD:
            raise EscrowRuleBroken(
                "not_held", f"order {self.order_id}'s hold is {self.status.value}: nothing can be {what}"
            )


def _dispute(dispute_id: str | None) -> str:
    return "no dispute" if dispute_id is None else f"dispute {dispute_id}"


def hold_not_found(order_id: str) -> EscrowRuleBroken:
    return EscrowRuleBroken("hold_not_found", f"order {order_id} has no escrow hold")


def _check_breakdown(order_id: str, amount: Money, breakdown: PriceBreakdown | None) -> None:
    """A breakdown must be this price's: its amount and settlement the hold's amount, and, paid in
    the same currency, its total too (nothing converted, no fee)."""
    if breakdown is None:
        return
    if breakdown.amount != amount or breakdown.settlement != amount:
        raise EscrowRuleBroken(
            "invalid_breakdown",
            f"order {order_id} holds {amount}, but the breakdown prices {breakdown.amount} "
            f"and settles {breakdown.settlement}",
        )
    if breakdown.total.currency == amount.currency and breakdown.total != amount:
        raise EscrowRuleBroken(
            "invalid_breakdown",
            f"order {order_id} is paid in {amount.currency}: the buyer's total {breakdown.total} must be the price",
        )
    if breakdown.fee.currency != breakdown.total.currency:
        raise EscrowRuleBroken("invalid_breakdown", f"order {order_id}: the fee is not in the buyer's currency")


def _money_in(order_id: str, buyer_id: str, amount: Money, breakdown: PriceBreakdown | None) -> list[Transfer]:
    """The buyer's money into the order's holding: directly, or through the FX positions (E4)."""
    holding = escrow_holding(order_id, amount.currency)
    paid_in = buyer_currency(amount, breakdown)
    buyer = buyer_funds(buyer_id, paid_in)
    if breakdown is None or paid_in == amount.currency:
        return [Transfer(f"hold:{order_id}", buyer, holding, amount, order_id, TransferCode.HOLD)]
    total = breakdown.total.amount_minor
    fee = min(breakdown.fee.amount_minor, total)
    transfers = []
    if fee > 0:
        fee_money = Money(amount_minor=fee, currency=paid_in)
        transfers.append(
            Transfer(
                f"hold:{order_id}:fee", buyer, AccountId.fee_revenue(paid_in), fee_money, order_id, TransferCode.FEE
            )
        )
    if total > fee:
        converted = Money(amount_minor=total - fee, currency=paid_in)
        transfers.append(
            Transfer(
                f"hold:{order_id}:fx-in",
                buyer,
                AccountId.fx_position(paid_in),
                converted,
                order_id,
                TransferCode.FX_CONVERSION,
            )
        )
    transfers.append(
        Transfer(
            f"hold:{order_id}",
            AccountId.fx_position(amount.currency),
            holding,
            amount,
            order_id,
            TransferCode.FX_CONVERSION,
        )
    )
    return transfers
