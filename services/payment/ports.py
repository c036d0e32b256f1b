"""What the payment handlers and the network worker share: the funding network's port and the
worker's wake-up call. Built once per process (``ctx.deps`` in handlers)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from services.payment.network import FundingNetwork, HttpFundingNetwork
from services.payment.settings import PaymentSettings
from shared.clock import Clock
from shared.consumer import HandlerContext


@dataclass
class PaymentPorts:
    network: FundingNetwork
    requests_due: asyncio.Event = field(default_factory=asyncio.Event)
    """Set after a batch stored a network request: the worker looks at once, not on a timer."""

    def wake_worker(self) -> None:
        self.requests_due.set()


def ports(ctx: HandlerContext) -> PaymentPorts:
    deps = ctx.deps
    assert isinstance(deps, PaymentPorts), "the payment service runs with PaymentPorts (app.DEFINITION)"
    return deps


def build_ports(settings: PaymentSettings, _clock: Clock) -> PaymentPorts:
    return PaymentPorts(HttpFundingNetwork(settings.funding_network_url, timeout=settings.network_timeout_seconds))
