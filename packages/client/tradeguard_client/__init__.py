"""A marketplace's client of TradeGuard: typed commands, order handles, a sandbox for tests.

    from contracts import Money, OrderStatus
    from tradeguard_client import TradeGuardClient

    async with TradeGuardClient.from_profile() as tradeguard:   # $TRADEGUARD_PROFILE
        order = await tradeguard.checkout(buyer_id=..., seller_id=..., amount=Money(amount_minor=12999, currency="USD"))
        await order.wait_for(OrderStatus.IN_ESCROW)

The message models come from ``tradeguard-contracts`` (the package ``contracts``).
"""

from tradeguard_client.client import (
    FINAL_STATUSES,
    ClientClosed,
    ClientError,
    CommandRefused,
    Order,
    OrderEnded,
    OrderEvent,
    Sent,
    TradeGuardClient,
)
from tradeguard_client.profile import ConnectionProfile, ProfileError
from tradeguard_client.sandbox import BooksAudit, Sandbox, SandboxError, SandboxProcess, TestBuyer, TestCard

__all__ = [
    "FINAL_STATUSES",
    "BooksAudit",
    "ClientClosed",
    "ClientError",
    "CommandRefused",
    "ConnectionProfile",
    "Order",
    "OrderEnded",
    "OrderEvent",
    "ProfileError",
    "Sandbox",
    "SandboxError",
    "SandboxProcess",
    "Sent",
    "TestBuyer",
    "TestCard",
    "TradeGuardClient",
]
