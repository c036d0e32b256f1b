"""Payment service: captures order payments (from the wallet balance for now)."""

from __future__ import annotations

from pathlib import Path

from contracts.topics import ACCOUNT_EVENTS, PAYMENT_COMMANDS, PAYMENT_EVENTS
from services.payment.handlers import handlers
from services.payment.settings import PaymentSettings
from shared.service import Service, ServiceDefinition

DEFINITION = ServiceDefinition(
    name="payment",
    handlers=handlers,
    consumes=(PAYMENT_COMMANDS, ACCOUNT_EVENTS),
    rejections_topic=PAYMENT_EVENTS,
    migrations=Path(__file__).parent / "migrations",
)


def create_service(settings: PaymentSettings | None = None) -> Service:
    return Service(DEFINITION, settings or PaymentSettings())
