"""Escrow service: holds captured payments per order and releases them to sellers."""

from __future__ import annotations

from pathlib import Path

from contracts.topics import ESCROW_COMMANDS, ESCROW_EVENTS
from services.escrow.handlers import handlers
from services.escrow.settings import EscrowSettings
from shared.service import Service, ServiceDefinition

DEFINITION = ServiceDefinition(
    name="escrow",
    handlers=handlers,
    consumes=(ESCROW_COMMANDS,),
    rejections_topic=ESCROW_EVENTS,
    migrations=Path(__file__).parent / "migrations",
)


def create_service(settings: EscrowSettings | None = None) -> Service:
    return Service(DEFINITION, settings or EscrowSettings())
