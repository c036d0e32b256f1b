"""Account service handlers: thin glue between messages and the account's rules.

One module per concern, all registering on the one ``handlers`` table. Each handler names
what it reads (``loads=``); the batch unit of work reads it for the whole batch and stores
what changed. Commands from people (the app gateway, operators) are ``keyed``: a retry with
the same idempotency key gets the first outcome again.
"""

from shared.consumer import MessageHandlers

handlers = MessageHandlers()

# Imported for their registrations on `handlers`.
from services.account.handlers import (  # noqa: E402
    bindings,
    funding_sources,
    registration,
    security,
    verification,
    wallets,
)

__all__ = ["bindings", "funding_sources", "handlers", "registration", "security", "verification", "wallets"]
