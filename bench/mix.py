"""Orders with confirmations, refunds and disputes mixed in, driven open-loop (the soak's load).

:class:`MixedDriver` is the bench's :class:`~bench.orders.OrderDriver` (Checkouts on a fixed
schedule, order events watched, never waiting for a reply) whose orders each follow one of
the scenario catalogue's ways through escrow, chosen by the order's number so every run of
the same length has the same mix:

* ``confirm``: the buyer confirms receipt; completed (scenario ``release-on-confirm``);
* ``partial_refund``: the marketplace refunds 40% in escrow, then the buyer confirms; completed,
  the seller paid the rest (``partial-refund-then-release``, chaos branch ``partial_refund``);
* ``full_refund``: the marketplace refunds the whole price in escrow; refunded (``full_refund``);
* ``dispute``: the buyer disputes; an operator resolves it in turn with a full refund
  (refunded), a split (30% back, completed) or a release (completed) (``dispute-*``).

Each step answers the order event that allows it (the saga takes one refund at a time, and a
dispute only resolves once the order is disputed): in escrow -> refund or dispute or confirm;
the refund counted (``OrderStatusChanged`` in escrow with ``refunded``) -> confirm; disputed ->
resolve. An order is finished at its first final status; one that ends otherwise than its flow
says, or is cancelled or refused, is failed with the reason.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from math import gcd
from typing import Any

from bench.orders import PRICE, OrderDriver, OrderTimes
from contracts import ConfirmReceipt, Money, OpenDispute, OrderStatus, RequestRefund
from contracts.catalogue import OPERATOR
from contracts.disputes import DisputeReason, DisputeResolution, ResolveDispute
from scripts.onboarding import Person
from scripts.stack import ServiceProcesses

PARTIAL_REFUND = Money(amount_minor=PRICE.amount_minor * 40 // 100, currency=PRICE.currency)
SPLIT_REFUND = Money(amount_minor=PRICE.amount_minor * 30 // 100, currency=PRICE.currency)


class Flow(StrEnum):
    """One way an order goes from escrow to its end."""

    CONFIRM = "confirm"
    PARTIAL_REFUND = "partial_refund"
    FULL_REFUND = "full_refund"
    DISPUTE = "dispute"


DEFAULT_MIX: Mapping[Flow, int] = {Flow.CONFIRM: 70, Flow.PARTIAL_REFUND: 10, Flow.FULL_REFUND: 10, Flow.DISPUTE: 10}
"""Shares in percent: most buyers confirm; one in ten orders is partly refunded, one in ten
wholly, one in ten disputed."""
RESOLUTIONS = (DisputeResolution.REFUND_IN_FULL, DisputeResolution.SPLIT, DisputeResolution.RELEASE)
"""The operator resolves the disputes in this turn."""


@dataclass(frozen=True, slots=True)
class Plan:
    """What one order does once in escrow, and how it must end."""

    flow: Flow
    resolution: DisputeResolution | None = None

    @property
    def final(self) -> OrderStatus:
        refunded = self.flow is Flow.FULL_REFUND or self.resolution is DisputeResolution.REFUND_IN_FULL
        return OrderStatus.REFUNDED if refunded else OrderStatus.COMPLETED

    @property
    def name(self) -> str:
        return f"{self.flow}:{self.resolution}" if self.resolution else str(self.flow)


class Mix:
    """Flows by weight, interleaved: every ``total`` consecutive orders hold exactly ``weight``
    orders of each flow, spread out (order n takes slot ``n * stride mod total``)."""

    def __init__(self, weights: Mapping[Flow, int] = DEFAULT_MIX) -> None:
        if any(w < 0 for w in weights.values()) or not any(weights.values()):
            raise ValueError(f"the mix needs non-negative weights, one at least positive: {dict(weights)}")
        self.weights = {flow: weights.get(flow, 0) for flow in Flow}
        self.total = sum(self.weights.values())
        self._stride = next(
            s for s in range(max(1, round(self.total * 0.618)), 2 * self.total + 2) if gcd(s, self.total) == 1
        )
        self._slots = [flow for flow, weight in self.weights.items() for _ in range(weight)]

    def flow_of(self, n: int) -> Flow:
        return self._slots[(n * self._stride) % self.total]

    def plan_of(self, n: int) -> Plan:
        flow = self.flow_of(n)
        if flow is not Flow.DISPUTE:
            return Plan(flow)
        return Plan(flow, RESOLUTIONS[(n // self.total) % len(RESOLUTIONS)])

    def shares(self) -> dict[str, float]:
        return {str(flow): round(100 * weight / self.total, 1) for flow, weight in self.weights.items()}

    @classmethod
    def parse(cls, text: str) -> Mix:
        """``confirm=70,partial_refund=10,full_refund=10,dispute=10`` (flows left out weigh 0)."""
        weights: dict[Flow, int] = {}
        for part in (p.strip() for p in text.split(",") if p.strip()):
            name, _, weight = part.partition("=")
            weights[Flow(name.strip())] = int(weight)
        return cls(weights)


class MixedDriver(OrderDriver):
    """The bench's open-loop driver, each order following its :class:`Plan` once in escrow."""

    def __init__(self, bootstrap_servers: str, run_id: str, accounts: int, mix: Mix | None = None) -> None:
        super().__init__(bootstrap_servers, run_id, accounts)
        self.mix = mix or Mix()
        self.plans: dict[str, Plan] = {}
        self.finals: dict[str, str] = {}
        """Each finished order's final status."""
        self._steps: dict[str, str] = {}
        """The last step each order was sent (``refund``, ``confirm``, ``dispute``, ``resolve``), so
        a repeated event does not send it again."""

    async def register_sellers(self, services: ServiceProcesses, timeout: float = 120.0) -> float:
        """Register every seller (phone proven), as a marketplace's sellers are: notices to them
        then go out like anyone's, where an account never registered would have its notices held
        for a profile that never comes. Returns the seconds it took."""
        start = time.perf_counter()
        first = len(self.buyers)  # phone numbers after the buyers': one account per number
        people = [Person.numbered(seller, first + n) for n, seller in enumerate(self.sellers)]
        async with self.onboarding(services, timeout) as onboarding:
            await asyncio.gather(*(onboarding.register(person) for person in people))
        return time.perf_counter() - start

    async def _checkout(self, phase: str) -> None:
        self.plans[self.order_id(phase, self._next)] = self.mix.plan_of(self._next)
        await super()._checkout(phase)

    async def _on_status(self, payload: dict[str, Any], order: OrderTimes, now: float) -> None:
        order_id, status = payload["order_id"], payload["status"]
        plan = self.plans.get(order_id, Plan(Flow.CONFIRM))
        if order.done:
            return
        if status == OrderStatus.IN_ESCROW:
            if order.in_escrow is None:
                order.in_escrow = now
                self.counters.in_escrow += 1
            await self._in_escrow(order_id, payload, plan)
        elif status == OrderStatus.DISPUTED and plan.flow is Flow.DISPUTE:
            await self._step(order_id, "resolve", self._resolution(order_id, plan), principal=OPERATOR)
        elif status in (OrderStatus.COMPLETED, OrderStatus.REFUNDED):
            self.finals[order_id] = status
            if status != plan.final:
                self._fail(order, f"{plan.name} ended {status}, not {plan.final}")
                return
            order.completed = now
            self.counters.completed += 1
        elif status == OrderStatus.CANCELLED:
            self._fail(order, f"cancelled: {payload.get('reason')}")

    async def _in_escrow(self, order_id: str, payload: dict[str, Any], plan: Plan) -> None:
        """The first time: the flow's first step; once a partial refund is counted: confirm."""
        buyer = payload["buyer_id"]
        done = self._steps.get(order_id)
        if plan.flow is Flow.PARTIAL_REFUND:
            if done is None:
                await self._step(order_id, "refund", _refund(order_id, PARTIAL_REFUND))
            elif done == "refund" and _refunded(payload) == PARTIAL_REFUND.amount_minor:
                await self._step(order_id, "confirm", ConfirmReceipt(order_id=order_id, buyer_id=buyer))
        elif done is not None:
            return
        elif plan.flow is Flow.FULL_REFUND:
            await self._step(order_id, "refund", _refund(order_id, PRICE))
        elif plan.flow is Flow.DISPUTE:
            dispute = OpenDispute(
                order_id=order_id,
                dispute_id=f"dispute-{order_id}",
                buyer_id=buyer,
                reason=DisputeReason.NOT_AS_DESCRIBED,
                description="soak: not as described",
            )
            await self._step(order_id, "dispute", dispute)
        else:
            await self._step(order_id, "confirm", ConfirmReceipt(order_id=order_id, buyer_id=buyer))

    def _resolution(self, order_id: str, plan: Plan) -> ResolveDispute:
        resolution = plan.resolution or DisputeResolution.RELEASE
        return ResolveDispute(
            order_id=order_id,
            dispute_id=f"dispute-{order_id}",
            operator_id="ops-soak",
            resolution=resolution,
            refund=SPLIT_REFUND if resolution is DisputeResolution.SPLIT else None,
            reason="soak: evidence reviewed",
        )

    async def _step(
        self,
        order_id: str,
        step: str,
        command: ConfirmReceipt | RequestRefund | OpenDispute | ResolveDispute,
        *,
        principal: str = "marketplace",
    ) -> None:
        if self._steps.get(order_id) == step:
            return  # a copy of the event that asked for it
        self._steps[order_id] = step
        await self._send(command, correlation_id=order_id, idempotency_key=f"{step}-{order_id}", principal=principal)


def _refund(order_id: str, amount: Money) -> RequestRefund:
    return RequestRefund(order_id=order_id, refund_id=f"refund-{order_id}", amount=amount, reason="soak refund")


def _refunded(payload: dict[str, Any]) -> int:
    refunded = payload.get("refunded") or {}
    return int(refunded.get("amount_minor", 0)) if isinstance(refunded, dict) else 0
