"""Escrow service: holds captured payments per order and releases them to sellers; answers its
ledger, holds and settlements on its HTTP port (read_api.py)."""

from __future__ import annotations

from pathlib import Path

from contracts.topics import ESCROW_COMMANDS, ESCROW_EVENTS
from services.escrow.handlers import handlers
from services.escrow.read_api import routes
from services.escrow.settings import EscrowSettings
from shared.service import Service, ServiceDefinition

DEFINITION = ServiceDefinition(
    name="escrow",
    handlers=handlers,
    consumes=(ESCROW_COMMANDS,),
    rejections_topic=ESCROW_EVENTS,
    migrations=Path(__file__).parent / "migrations",
    read_api=lambda service: routes(service.engine),
)


def create_service(settings: EscrowSettings | None = None) -> Service:
    return Service(DEFINITION, settings or EscrowSettings())
