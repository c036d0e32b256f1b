"""What the payment handlers and the network worker share: the funding network's port and the
worker's wake-up call. Built once per process (``ctx.deps`` in handlers)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from services.payment.domain.quotes import PricingRules
from services.payment.network import FundingNetwork, HttpFundingNetwork
from services.payment.settings import PaymentSettings
from shared.clock import Clock
from shared.consumer import HandlerContext


@dataclass
class PaymentPorts:
    network: FundingNetwork
    pricing: PricingRules = field(default_factory=PricingRules.shipped)
    requests_due: asyncio.Event = field(default_factory=asyncio.Event)
    """Set after a batch stored a network request: the worker looks at once, not on a timer."""

    def __post_init__(self) -> None:
        use_pricing(self.pricing)

    def wake_worker(self) -> None:
        self.requests_due.set()


def ports(ctx: HandlerContext) -> PaymentPorts:
    deps = ctx.deps
    assert isinstance(deps, PaymentPorts), "the payment service runs with PaymentPorts (app.DEFINITION)"
    return deps


def build_ports(settings: PaymentSettings, _clock: Clock) -> PaymentPorts:
    pricing = PricingRules.load(settings.rates_file, settings.fees_file)
    network = HttpFundingNetwork(settings.funding_network_url, timeout=settings.network_timeout_seconds)
    return PaymentPorts(network, pricing)


_PRICING: list[PricingRules] = []


def use_pricing(pricing: PricingRules) -> None:
    """The rules this process prices with, for what handlers declare before any message: which
    campaign budgets a batch loads (a ``loads=`` key sees the message, not the ports)."""
    _PRICING[:] = [pricing]


def discount_ids() -> tuple[str, ...]:
    return _PRICING[0].discount_ids() if _PRICING else ()
