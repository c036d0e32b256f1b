"""Notification service: turns events into notifications in each user's in-app inbox."""

from __future__ import annotations

from pathlib import Path

from faststream import FastStream

from contracts.topics import ACCOUNT_EVENTS, ESCROW_EVENTS, ORDER_EVENTS, PAYMENT_EVENTS
from services.notification.handlers import handlers
from services.notification.settings import NotificationSettings
from shared.service import ServiceDefinition, build_app

DEFINITION = ServiceDefinition(
    name="notification",
    handlers=handlers,
    consumes=(ORDER_EVENTS, PAYMENT_EVENTS, ESCROW_EVENTS, ACCOUNT_EVENTS),
    rejections_topic=ORDER_EVENTS,
    migrations=Path(__file__).parent / "migrations",
)


def create_app(settings: NotificationSettings | None = None) -> FastStream:
    return build_app(DEFINITION, settings or NotificationSettings())
