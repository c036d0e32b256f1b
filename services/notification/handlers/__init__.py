"""The notification service's handlers, one module per concern; importing the package registers them."""

from shared.consumer import MessageHandlers

handlers = MessageHandlers()

from services.notification.handlers import commands, events  # noqa: E402 - register after `handlers` exists

__all__ = ["commands", "events", "handlers"]
