"""The funding network of the money model: its own book of charges and refunds, keyed by the
payment's request id (its idempotency key), and the faults a model run puts on each call.

As the simulator's book does (services/funding/book.py), a request id is applied at most once:
asked again, the network answers what it first did. A fault decides what one call comes to:

================  =========================================================================
fault             what the network does
================  =========================================================================
``none``          applies the request and answers it
``decline``       the issuer says no (a charge is booked as declined; a refund is not booked)
``unavailable``   applies nothing and says so (a retry may succeed)
``lost_before``   the request never reached the issuer: nothing applied, no answer (unknown)
``lost_after``    applied, and the answer was lost on the way back (unknown)
================  =========================================================================
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from contracts import Money, NetworkOutcome, NetworkRequestKind
from services.payment.domain.network import NetworkRequest


class Fault(StrEnum):
    NONE = "none"
    DECLINE = "decline"
    UNAVAILABLE = "unavailable"
    LOST_BEFORE = "lost_before"
    LOST_AFTER = "lost_after"


@dataclass(slots=True)
class Charge:
    request_id: str
    order_id: str
    amount: Money
    charge_id: str | None  # None: declined
    refunded_minor: int = 0


@dataclass(frozen=True, slots=True)
class NetworkRefund:
    request_id: str
    order_id: str
    charge_id: str
    amount: Money


@dataclass(frozen=True, slots=True)
class NetworkAnswer:
    outcome: NetworkOutcome
    charge_id: str | None = None
    reason: str | None = None


LOST = NetworkAnswer(NetworkOutcome.UNKNOWN, reason="network_timeout")
AWAY = NetworkAnswer(NetworkOutcome.UNAVAILABLE, reason="issuer_unavailable")


class FundingNetwork:
    """The card issuers and banks behind the payment's network worker, in one book."""

    def __init__(self) -> None:
        self.charges: dict[str, Charge] = {}
        self.refunds: dict[str, NetworkRefund] = {}
        self.calls = 0

    def answer(self, request: NetworkRequest, fault: Fault) -> NetworkAnswer:
        """What one call about ``request`` (as it stands: an operation or its inquiry) comes to."""
        self.calls += 1
        match request.kind:
            case NetworkRequestKind.CHARGE:
                return self._charge(request, fault)
            case NetworkRequestKind.STATUS:
                return self._inquire(fault, lambda: self._charge_status(request.request_id))
            case NetworkRequestKind.REFUND:
                return self._refund(request, fault)
            case NetworkRequestKind.REFUND_STATUS:
                known = request.request_id in self.refunds
                found = NetworkAnswer(NetworkOutcome.REFUNDED if known else NetworkOutcome.NOT_FOUND)
                return self._inquire(fault, lambda: found)
        raise AssertionError(f"no such request kind {request.kind}")

    def _charge(self, request: NetworkRequest, fault: Fault) -> NetworkAnswer:
        first = self.charges.get(request.request_id)
        if first is not None:  # a repeat: the first result, never a second charge
            return self._charge_status(request.request_id)
        if fault in (Fault.UNAVAILABLE, Fault.LOST_BEFORE):
            return AWAY if fault is Fault.UNAVAILABLE else LOST
        if fault is Fault.DECLINE:
            self.charges[request.request_id] = Charge(request.request_id, request.order_id, request.amount, None)
            return NetworkAnswer(NetworkOutcome.DECLINED, reason="do_not_honor")
        charge_id = f"ch-{len(self.charges) + 1}"
        self.charges[request.request_id] = Charge(request.request_id, request.order_id, request.amount, charge_id)
        return LOST if fault is Fault.LOST_AFTER else NetworkAnswer(NetworkOutcome.CHARGED, charge_id=charge_id)

    def _charge_status(self, request_id: str) -> NetworkAnswer:
        charge = self.charges.get(request_id)
        if charge is None:
            return NetworkAnswer(NetworkOutcome.NOT_FOUND)
        if charge.charge_id is None:
            return NetworkAnswer(NetworkOutcome.DECLINED, reason="do_not_honor")
        return NetworkAnswer(NetworkOutcome.CHARGED, charge_id=charge.charge_id)

    def _refund(self, request: NetworkRequest, fault: Fault) -> NetworkAnswer:
        if request.request_id in self.refunds:
            return NetworkAnswer(NetworkOutcome.REFUNDED)
        if fault in (Fault.UNAVAILABLE, Fault.LOST_BEFORE):
            return AWAY if fault is Fault.UNAVAILABLE else LOST
        charge = next((c for c in self.charges.values() if c.charge_id and c.charge_id == request.charge_id), None)
        if fault is Fault.DECLINE:
            return NetworkAnswer(NetworkOutcome.DECLINED, reason="refund_declined")
        if charge is None or charge.refunded_minor + request.amount.amount_minor > charge.amount.amount_minor:
            # The issuer never gives back more than the charge took (the simulator's book refuses it too).
            return NetworkAnswer(NetworkOutcome.DECLINED, reason="exceeds_charge")
        charge.refunded_minor += request.amount.amount_minor
        assert request.charge_id is not None
        self.refunds[request.request_id] = NetworkRefund(
            request.request_id, request.order_id, request.charge_id, request.amount
        )
        return LOST if fault is Fault.LOST_AFTER else NetworkAnswer(NetworkOutcome.REFUNDED)

    @staticmethod
    def _inquire(fault: Fault, found: Callable[[], NetworkAnswer]) -> NetworkAnswer:
        if fault is Fault.UNAVAILABLE:
            return AWAY
        if fault in (Fault.LOST_BEFORE, Fault.LOST_AFTER):
            return LOST
        return found()

    # ------------------------------------------------------------------ what the book says, per order

    def charged_minor(self, order_id: str) -> int:
        return sum(c.amount.amount_minor for c in self.charges.values() if c.order_id == order_id and c.charge_id)

    def refunded_minor(self, order_id: str) -> int:
        return sum(r.amount.amount_minor for r in self.refunds.values() if r.order_id == order_id)
