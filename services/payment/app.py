"""Payment service: captures order payments: the account authorises, then the wallet or the
funding network pays (the network worker sends the requests)."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from contracts.topics import ACCOUNT_EVENTS, PAYMENT_COMMANDS, PAYMENT_EVENTS
from services.payment.handlers import handlers
from services.payment.ports import PaymentPorts, build_ports
from services.payment.read_api import history, limits, order_payment
from services.payment.settings import PaymentSettings
from services.payment.worker import NetworkWorker
from shared.service import Service, ServiceDefinition


async def run_network_worker(service: Service) -> None:
    assert isinstance(service.dependencies, PaymentPorts)
    await NetworkWorker(service.engine, service.producer, service.dependencies, service.clock).run()


DEFINITION = ServiceDefinition(
    name="payment",
    handlers=handlers,
    consumes=(PAYMENT_COMMANDS, ACCOUNT_EVENTS),
    rejections_topic=PAYMENT_EVENTS,
    migrations=Path(__file__).parent / "migrations",
    dependencies=build_ports,
    read_api=lambda service: {
        "/payments": partial(history, service.engine),
        "/payment": partial(order_payment, service.engine),
        "/limits": partial(limits, service.engine),
    },
    workers=(run_network_worker,),
)


def create_service(settings: PaymentSettings | None = None) -> Service:
    return Service(DEFINITION, settings or PaymentSettings())
