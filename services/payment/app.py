"""Payment service: captures order payments (from the wallet balance for now)."""

from __future__ import annotations

from pathlib import Path

from faststream import FastStream

from contracts.topics import ACCOUNT_EVENTS, PAYMENT_COMMANDS, PAYMENT_EVENTS
from services.payment.handlers import handlers
from services.payment.settings import PaymentSettings
from shared.service import ServiceDefinition, build_app

DEFINITION = ServiceDefinition(
    name="payment",
    handlers=handlers,
    consumes=(PAYMENT_COMMANDS, ACCOUNT_EVENTS),
    rejections_topic=PAYMENT_EVENTS,
    migrations=Path(__file__).parent / "migrations",
)


def create_app(settings: PaymentSettings | None = None) -> FastStream:
    return build_app(DEFINITION, settings or PaymentSettings())
