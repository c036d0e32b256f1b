"""Refunds of an order (P6, S3): the marketplace's, a dispute's, and the saga's compensations.

A refund of money in escrow goes returning (escrow gives that part of the hold back) ->
refunding (the payment pays it to the buyer's sources) -> refunded. A *compensation* has
nothing in escrow to take back (the hold was refused, or the payment arrived after the order
was cancelled): it starts at refunding. A refund the payment could not pay is retried with the
compensation policy's backoff: the same payment refund id with a higher ``attempt``, so the
payment tries the same refund's card part again under the same network request id (never a
second refund beside the failed one, which would be counted, or paid, twice); once the
retries are spent it is failed and an operator's.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from enum import StrEnum

from contracts import Money
from shared.errors import CommandRefused


class OrderRuleBroken(CommandRefused):
    """A command the order's rules refuse."""


COMPENSATION = "compensation"
"""The refund id of an order's compensation: there is at most one (the payment is captured once)."""

DISPUTE_REFUND = "dispute"
"""The refund id of what a dispute's resolution gives back: an order is disputed once."""

_RETRY_SUFFIX = re.compile(r"^(?P<base>.+)~retry(?P<n>\d+)$")


RESERVED = (COMPENSATION, DISPUTE_REFUND)
MAX_REFUND_ID = 100  # the contracts' bound on a refund id


def payment_refund_id(order_id: str, refund_id: str) -> str:
    """The id the payment service knows a refund by, on every try. Its refund ids are global
    (the marketplace's own are), so the saga's per-order ones carry the order's id."""
    base = f"{refund_id}:{order_id}" if refund_id in RESERVED else refund_id
    if len(base) > MAX_REFUND_ID:  # a long order id: keep it unique, within bounds
        digest = hashlib.sha256(base.encode()).hexdigest()[:24]
        base = f"{base[: MAX_REFUND_ID - 25]}-{digest}"
    return base


def refund_of(payment_refund: str) -> str:
    """The saga's refund id behind a payment refund id (inverse of :func:`payment_refund_id`;
    ``~retry<n>`` is how retries were named before they kept the id, and still reads)."""
    match = _RETRY_SUFFIX.match(payment_refund)
    base = match["base"] if match else payment_refund
    reserved = base.split(":", 1)[0]
    return reserved if reserved in RESERVED and ":" in base else base


MAX_MARKETPLACE_REFUND_ID = MAX_REFUND_ID - len("~retry100")
"""Room for the retry suffix earlier versions gave retries, whose answers may still be read."""


def check_refund_id(refund_id: str) -> None:
    if len(refund_id) > MAX_MARKETPLACE_REFUND_ID:
        raise OrderRuleBroken(
            "invalid_refund",
            f"a refund id is at most {MAX_MARKETPLACE_REFUND_ID} characters, not {len(refund_id)}",
        )
    if _RETRY_SUFFIX.match(refund_id) or refund_id.split(":", 1)[0] in RESERVED:
        raise OrderRuleBroken(
            "invalid_refund",
            f"refund id {refund_id!r} is reserved: use one that does not start with {COMPENSATION!r} or "
            f"{DISPUTE_REFUND!r} and does not end in ~retry<n>",
        )


class RefundStatus(StrEnum):
    """Where one refund is (S1's refund branch): requested and returning, refunding, done."""

    RETURNING = "returning"  # ReturnFunds sent: escrow is taking it out of the hold
    REFUNDING = "refunding"  # out of escrow (or never in it); RefundPayment sent, perhaps retried
    REFUNDED = "refunded"  # the buyer has it back
    FAILED = "failed"  # the payment could not pay it back, retries spent: an operator's case


@dataclass(slots=True)
class Refund:
    """One refund of an order, by its id (a repeat with it is the same refund)."""

    order_id: str
    refund_id: str
    amount: Money
    reason: str = ""
    status: RefundStatus = RefundStatus.RETURNING
    failure: str | None = None
    dispute_id: str | None = None  # the dispute whose resolution it carries out

    def check_same_request(self, amount: Money) -> None:
        """P5: the same refund id with another amount is refused (the same amount is a repeat)."""
        if amount != self.amount:
            raise OrderRuleBroken(
                "refund_conflict",
                f"refund {self.refund_id} of order {self.order_id} was already asked for {self.amount}, not {amount}",
            )

    @property
    def in_flight(self) -> bool:
        """Whether the payment may still answer it (a failed one may be retried by an operator)."""
        return self.status in (RefundStatus.REFUNDING, RefundStatus.FAILED)
