"""What the notification handlers and the email worker share: the renderer, the mail server's
port, the retry policy and the worker's wake-up call. Built once per process (``ctx.deps``)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from services.notification.domain.delivery import RetryPolicy
from services.notification.domain.rendering import Renderer
from services.notification.mail import Mailer, SmtpMailer
from services.notification.settings import NotificationSettings
from shared.clock import Clock
from shared.consumer import HandlerContext


@dataclass
class NotificationPorts:
    mailer: Mailer
    renderer: Renderer = field(default_factory=Renderer)
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    deliveries_due: asyncio.Event = field(default_factory=asyncio.Event)
    """Set after a batch stored (or re-drove) a delivery: the worker looks at once."""

    def wake_worker(self) -> None:
        self.deliveries_due.set()


def ports(ctx: HandlerContext) -> NotificationPorts:
    deps = ctx.deps
    assert isinstance(deps, NotificationPorts), "the notification service runs with NotificationPorts"
    return deps


def build_ports(settings: NotificationSettings, _clock: Clock) -> NotificationPorts:
    mailer = SmtpMailer(
        host=settings.smtp_host,
        port=settings.smtp_port,
        sender=settings.mail_from,
        timeout=settings.smtp_timeout_seconds,
        username=settings.smtp_username,
        password=settings.smtp_password,
        validate_certs=settings.smtp_validate_certs,
    )
    policy = RetryPolicy(first=settings.retry_first, cap=settings.retry_cap, attempts=settings.retry_attempts)
    return NotificationPorts(mailer, policy=policy)
