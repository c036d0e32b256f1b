"""``python -m services.funding``: serve the funding network simulator until SIGTERM or SIGINT.

Once the server listens it logs "funding network simulator listening" with its port and, if
``FUNDING_READY_FILE`` is set, writes its base URL there (so a test may ask for port 0 and read
the port it got). The file is removed as soon as the server begins to stop.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType

import uvicorn

from services.funding.app import create_app
from services.funding.cards import ScriptedCardsInvalid
from services.funding.settings import FundingSettings
from shared.clock import Clock, FileClock, clock_from_environment
from shared.logging import configure_logging, get_logger

log = get_logger("services.funding")


class _Server(uvicorn.Server):
    """uvicorn's server, telling when it listens and when it begins to stop."""

    def __init__(
        self, config: uvicorn.Config, on_listening: Callable[[int], None], on_stopping: Callable[[], None]
    ) -> None:
        super().__init__(config)
        self._on_listening, self._on_stopping = on_listening, on_stopping

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:  # uvicorn exits from startup() itself when the port cannot be bound
            self._on_listening(self._bound_port())

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._on_stopping()
        await super().shutdown(sockets)

    def _bound_port(self) -> int:
        port: int = self.servers[0].sockets[0].getsockname()[1]
        return port


def _clock(settings: FundingSettings) -> Clock:
    """The clock file's time when one is configured (FUNDING_CLOCK_FILE, else TRADEGUARD_CLOCK_FILE), X8."""
    if settings.clock_file is not None:
        return FileClock(settings.clock_file)
    return clock_from_environment()


def _write_ready_file(path: Path, url: str) -> None:
    # Written aside and renamed, so a reader never sees a half-written URL.
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(url + "\n", encoding="utf-8")
    partial.replace(path)


class _StopSignals:
    """SIGTERM/SIGINT before, during and after uvicorn's own handling of them.

    uvicorn shuts down gracefully on either, then re-raises the signal into the handler that
    was there before it: this one, which lets the process end normally (exit 0) instead of by
    the signal. One that arrives before the server runs stops it as soon as it starts.
    """

    def __init__(self) -> None:
        self.server: uvicorn.Server | None = None
        self.requested = False
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._handle)

    def _handle(self, _signum: int, _frame: FrameType | None) -> None:
        self.requested = True
        if self.server is not None:
            self.server.should_exit = True

    def attach(self, server: uvicorn.Server) -> None:
        self.server = server
        server.should_exit = self.requested


def serve(settings: FundingSettings) -> int:
    """Run the server; the process's exit status."""
    signals = _StopSignals()
    try:
        app = create_app(settings, _clock(settings))
    except ScriptedCardsInvalid as invalid:
        log.error("test cards invalid", error=str(invalid))  # noqa: TRY400 (bad data, not a bug: no traceback)
        return 2

    def listening(port: int) -> None:
        log.info("funding network simulator listening", host=settings.host, port=port, pid=os.getpid())
        if settings.ready_file is not None:
            _write_ready_file(settings.ready_file, f"http://{settings.host}:{port}")

    def stopping() -> None:
        log.info("funding network simulator stopping")
        _remove_ready_file(settings)

    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.http_port,
        log_config=None,  # our logging (shared.logging) already routes uvicorn's warnings and errors
        access_log=False,  # the server logs nothing about requests; the app logs tokens only
        lifespan="on",
        server_header=False,
    )
    server = _Server(config, listening, stopping)
    signals.attach(server)
    try:
        asyncio.run(server.serve())
    finally:
        _remove_ready_file(settings)  # also when the start failed (port taken, database unreadable)
    if not server.started:
        return 1
    log.info("funding network simulator stopped")
    return 0


def _remove_ready_file(settings: FundingSettings) -> None:
    if settings.ready_file is not None:
        settings.ready_file.unlink(missing_ok=True)


def main() -> None:
    settings = FundingSettings()
    configure_logging("funding", settings.log_level, settings.log_format)
    sys.exit(serve(settings))


if __name__ == "__main__":
    main()
