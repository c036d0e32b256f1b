"""Account service: owns wallets and their balances."""

from __future__ import annotations

from pathlib import Path

from faststream import FastStream

from contracts.topics import ACCOUNT_COMMANDS, ACCOUNT_EVENTS
from services.account.handlers import handlers
from services.account.settings import AccountSettings
from shared.service import ServiceDefinition, build_app

DEFINITION = ServiceDefinition(
    name="account",
    handlers=handlers,
    consumes=(ACCOUNT_COMMANDS,),
    rejections_topic=ACCOUNT_EVENTS,
    migrations=Path(__file__).parent / "migrations",
)


def create_app(settings: AccountSettings | None = None) -> FastStream:
    return build_app(DEFINITION, settings or AccountSettings())
