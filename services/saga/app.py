"""Saga coordinator: drives each order through payment, escrow and release; its orders are
read on its HTTP port (``GET /orders``, ``/order``, ``/orders/stuck``: read_api.py); its
timers are swept by shared/deadlines.py and fire as OrderDeadlineReached (S4)."""

from __future__ import annotations

from datetime import datetime
from functools import partial
from pathlib import Path

from contracts import OrderDeadlineReached
from contracts.topics import ESCROW_EVENTS, ORDER_COMMANDS, ORDER_EVENTS, PAYMENT_EVENTS
from services.saga.handlers import handlers
from services.saga.ports import build_ports
from services.saga.read_api import list_orders, show_order, stuck_orders
from services.saga.retention import TRANSITIONS_ARCHIVE
from services.saga.settings import SagaSettings
from services.saga.store import orders
from shared.clock import Clock
from shared.deadlines import Deadlines
from shared.service import Service, ServiceDefinition


def _nudge(order_id: str, due_at: datetime) -> OrderDeadlineReached:
    return OrderDeadlineReached(order_id=order_id, due_at=due_at)


DEFINITION = ServiceDefinition(
    name="saga",
    handlers=handlers,
    consumes=(ORDER_COMMANDS, PAYMENT_EVENTS, ESCROW_EVENTS),
    rejections_topic=ORDER_EVENTS,
    migrations=Path(__file__).parent / "migrations",
    dependencies=build_ports,
    deadlines=Deadlines(orders, key="order_id", due="next_due_at", nudge=_nudge),
    archives=(TRANSITIONS_ARCHIVE,),
    read_api=lambda service: {
        "/orders": partial(list_orders, service.engine),
        "/order": partial(show_order, service.engine),
        "/orders/stuck": partial(stuck_orders, service.engine, service.clock),
    },
)


def create_service(settings: SagaSettings | None = None, clock: Clock | None = None) -> Service:
    return Service(DEFINITION, settings or SagaSettings(), clock)
