"""Saga coordinator: drives each order through payment, escrow and release."""

from __future__ import annotations

from pathlib import Path

from faststream import FastStream

from contracts.topics import ESCROW_EVENTS, ORDER_COMMANDS, ORDER_EVENTS, PAYMENT_EVENTS
from services.saga.handlers import handlers
from services.saga.settings import SagaSettings
from shared.service import ServiceDefinition, build_app

DEFINITION = ServiceDefinition(
    name="saga",
    handlers=handlers,
    consumes=(ORDER_COMMANDS, PAYMENT_EVENTS, ESCROW_EVENTS),
    rejections_topic=ORDER_EVENTS,
    migrations=Path(__file__).parent / "migrations",
)


def create_app(settings: SagaSettings | None = None) -> FastStream:
    return build_app(DEFINITION, settings or SagaSettings())
