"""Saga coordinator: drives each order through payment, escrow and release; its orders are
read on its HTTP port (``GET /orders``, read_api.py)."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from contracts.topics import ESCROW_EVENTS, ORDER_COMMANDS, ORDER_EVENTS, PAYMENT_EVENTS
from services.saga.handlers import handlers
from services.saga.read_api import list_orders
from services.saga.settings import SagaSettings
from shared.service import Service, ServiceDefinition

DEFINITION = ServiceDefinition(
    name="saga",
    handlers=handlers,
    consumes=(ORDER_COMMANDS, PAYMENT_EVENTS, ESCROW_EVENTS),
    rejections_topic=ORDER_EVENTS,
    migrations=Path(__file__).parent / "migrations",
    read_api=lambda service: {"/orders": partial(list_orders, service.engine)},
)


def create_service(settings: SagaSettings | None = None) -> Service:
    return Service(DEFINITION, settings or SagaSettings())
