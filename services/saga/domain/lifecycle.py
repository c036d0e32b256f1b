"""S1: the whole order lifecycle in one table, and the diagram drawn from it.

Every status change an order can make is one row: what moves it, from which statuses, to
which, and what the saga sends as it does. :class:`~services.saga.domain.orders.Order` checks
each move against this table and refuses one that is not in it (an illegal transition is a
bug: refused and recorded, never applied). Steps that change no status (a refund of part of
the price, a reminder, an extension) are in the orders module, next to the rules they follow.

``python -m services.saga.domain.lifecycle`` prints the Mermaid diagram kept in
docs/saga-lifecycle.md (a test fails when the two differ).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from contracts import OrderStatus as S

NEW = None  # before Checkout: the order does not exist yet


@dataclass(frozen=True, slots=True)
class Transition:
    trigger: str
    sources: tuple[S | None, ...]
    target: S
    sends: str = ""


_PAYING = (S.PAYMENT_PENDING, S.PAYMENT_RETRYING, S.PAYMENT_FAILED)

LIFECYCLE: tuple[Transition, ...] = (
    Transition("Checkout", (NEW,), S.PAYMENT_PENDING, "CapturePayment; timer payment_window"),
    Transition("PaymentCaptured", _PAYING, S.PAID, "HoldFunds"),
    Transition(
        "PaymentFailed, transient, retries left", (S.PAYMENT_PENDING,), S.PAYMENT_RETRYING, "timer payment_retry"
    ),
    Transition("timer payment_retry", (S.PAYMENT_RETRYING,), S.PAYMENT_PENDING, "CapturePayment, next attempt"),
    Transition("PaymentFailed, a decline", (S.PAYMENT_PENDING,), S.PAYMENT_FAILED),
    Transition("PayAgain", (S.PAYMENT_FAILED, S.PAYMENT_RETRYING), S.PAYMENT_PENDING, "CapturePayment, next attempt"),
    Transition("PaymentFailed, order-ending or retries exhausted", (S.PAYMENT_PENDING,), S.CANCELLED),
    Transition("timer payment_window, or operator cancel", _PAYING, S.CANCELLED),
    Transition("PaymentCaptured, late", (S.CANCELLED,), S.COMPENSATING, "RefundPayment"),
    Transition("HoldFunds refused", (S.PAID,), S.COMPENSATING, "RefundPayment"),
    Transition("PaymentRefunded", (S.COMPENSATING,), S.CANCELLED),
    Transition("FundsHeld", (S.PAID,), S.IN_ESCROW, "timers release_reminder, auto_release"),
    Transition("ConfirmReceipt, or timer auto_release", (S.IN_ESCROW,), S.RELEASING, "ReleaseFunds"),
    Transition("OpenDispute", (S.IN_ESCROW,), S.DISPUTED, "FreezeFunds; DisputeOpened; timer seller_response"),
    Transition("ResolveDispute: release, or split once refunded", (S.DISPUTED,), S.RELEASING, "ReleaseFunds"),
    Transition("PaymentRefunded, the last unit of the price", (S.IN_ESCROW, S.DISPUTED), S.REFUNDED),
    Transition("FundsReleased", (S.RELEASING,), S.COMPLETED, "CreditWallet to the seller"),
)

FINAL = frozenset({S.COMPLETED, S.CANCELLED, S.REFUNDED})

ALLOWED: frozenset[tuple[S | None, S]] = frozenset(
    (source, transition.target) for transition in LIFECYCLE for source in transition.sources
)


def allowed(source: S | None, target: S) -> bool:
    return (source, target) in ALLOWED


def mermaid() -> str:
    """The lifecycle as a Mermaid state diagram."""
    lines = ["stateDiagram-v2"]
    for transition in LIFECYCLE:
        label = transition.trigger + (f" / {transition.sends}" if transition.sends else "")
        for source in transition.sources:
            origin = "[*]" if source is None else source.value
            lines.append(f"    {origin} --> {transition.target.value}: {label}")
    lines.extend(f"    {status.value} --> [*]" for status in sorted(FINAL))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(mermaid())
