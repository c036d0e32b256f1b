"""Account service: registration, verification, funding sources, marketplace grants,
security checks and wallets (A1-A6); what operators review is read on its HTTP port (read_api.py)."""

from __future__ import annotations

from pathlib import Path

from contracts.topics import ACCOUNT_COMMANDS, ACCOUNT_EVENTS
from services.account.handlers import handlers
from services.account.ports import build_ports
from services.account.read_api import routes
from services.account.settings import AccountSettings
from shared.service import Service, ServiceDefinition

DEFINITION = ServiceDefinition(
    name="account",
    handlers=handlers,
    consumes=(ACCOUNT_COMMANDS,),
    rejections_topic=ACCOUNT_EVENTS,
    migrations=Path(__file__).parent / "migrations",
    dependencies=build_ports,
    read_api=lambda service: routes(service.engine),
)


def create_service(settings: AccountSettings | None = None) -> Service:
    return Service(DEFINITION, settings or AccountSettings())
