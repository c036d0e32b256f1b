"""Structured logging (structlog): one JSON line per event, carrying the correlation id.

Errors that repeat while something is down (the broker, the database) are rate-limited:
the first line of a kind is written, then at most one per interval, carrying how many were
suppressed. Libraries' own log lines (aiokafka reconnect attempts) get the same treatment.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import structlog


def configure_logging(service: str, level: str = "INFO", fmt: str = "auto") -> None:
    """Route structlog and stdlib logging to stderr, JSON unless a person is watching."""
    use_console = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    renderer: structlog.typing.Processor = (
        structlog.dev.ConsoleRenderer() if use_console else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(service=service)
    # Libraries (aiokafka) log through stdlib; keep their warnings, drop their chatter, and
    # never let a reconnect loop write thousands of identical lines.
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RepeatFilter) for f in handler.filters):
            handler.addFilter(RepeatFilter())


class RepeatFilter(logging.Filter):
    """Lets the first stdlib record of each (logger, message template) through, then one per
    ``interval`` seconds, annotated with how many were dropped in between."""

    def __init__(self, interval: float = 10.0) -> None:
        super().__init__()
        self._interval = interval
        self._last: dict[tuple[str, object], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.msg)
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last[0] < self._interval:
            self._last[key] = (last[0], last[1] + 1)
            return False
        suppressed = last[1] if last is not None else 0
        self._last[key] = (now, 0)
        if suppressed:
            record.msg = f"{record.msg} (and {suppressed} more like it in the last {self._interval:.0f} s)"
        return True


class RateLimitedLog:
    """Our own repeated errors (a relay or a batch retrying): one line per interval, with a count."""

    def __init__(self, logger: structlog.stdlib.BoundLogger, interval: float = 10.0) -> None:
        self._logger, self._interval = logger, interval
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def error(self, event: str, **fields: Any) -> None:
        self._emit("error", event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._emit("warning", event, fields)

    def _emit(self, level: str, event: str, fields: dict[str, Any]) -> None:
        now = time.monotonic()
        if now - self._last.get(event, -self._interval) < self._interval:
            self._suppressed[event] = self._suppressed.get(event, 0) + 1
            return
        self._last[event] = now
        suppressed = self._suppressed.pop(event, 0)
        if suppressed:
            fields["repeated"] = suppressed
        getattr(self._logger, level)(event, **fields)

    def reset(self, event: str) -> None:
        """The condition ended: the next occurrence is logged at once."""
        self._last.pop(event, None)
        self._suppressed.pop(event, None)


@contextmanager
def message_context(
    correlation_id: str, message_id: str, message_type: str, trace_id: str | None = None
) -> Iterator[None]:
    """Bind a message's ids (and its trace's, when traces are recorded) to every log line written
    while it is handled."""
    ids = {"correlation_id": correlation_id, "message_id": message_id, "message_type": message_type}
    if trace_id is not None:
        ids["trace_id"] = trace_id
    with structlog.contextvars.bound_contextvars(**ids):
        yield


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger
