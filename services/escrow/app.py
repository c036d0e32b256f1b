"""Escrow service: holds captured payments per order and releases them to sellers."""

from __future__ import annotations

from pathlib import Path

from faststream import FastStream

from contracts.topics import ESCROW_COMMANDS, ESCROW_EVENTS
from services.escrow.handlers import handlers
from services.escrow.settings import EscrowSettings
from shared.service import ServiceDefinition, build_app

DEFINITION = ServiceDefinition(
    name="escrow",
    handlers=handlers,
    consumes=(ESCROW_COMMANDS,),
    rejections_topic=ESCROW_EVENTS,
    migrations=Path(__file__).parent / "migrations",
)


def create_app(settings: EscrowSettings | None = None) -> FastStream:
    return build_app(DEFINITION, settings or EscrowSettings())
