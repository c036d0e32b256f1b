"""Account service: owns wallets and their balances."""

from __future__ import annotations

from pathlib import Path

from contracts.topics import ACCOUNT_COMMANDS, ACCOUNT_EVENTS
from services.account.handlers import handlers
from services.account.settings import AccountSettings
from shared.service import Service, ServiceDefinition

DEFINITION = ServiceDefinition(
    name="account",
    handlers=handlers,
    consumes=(ACCOUNT_COMMANDS,),
    rejections_topic=ACCOUNT_EVENTS,
    migrations=Path(__file__).parent / "migrations",
)


def create_service(settings: AccountSettings | None = None) -> Service:
    return Service(DEFINITION, settings or AccountSettings())
