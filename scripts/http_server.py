"""Serve an ASGI app on the running loop without taking its signals (the operator console and
the sandbox's test helpers run beside a stack whose runner owns SIGINT and SIGTERM)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import uvicorn


async def serve_app(
    app: Any, host: str, port: int, started: Callable[[str], None] | None = None, *, what: str = "the server"
) -> None:
    """Serve ``app`` until cancelled; ``started`` is told its address once it listens (port 0: any)."""
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    # Server.serve() would also take over SIGINT and SIGTERM: its steps, without that (as
    # uvicorn's own _serve takes them).
    config.load()
    server.lifespan = config.lifespan_class(config)
    await server.startup()
    if server.should_exit:  # the port was taken: uvicorn has said so
        raise OSError(f"{what} could not listen on {host}:{port}")
    bound_host, bound_port = server.servers[0].sockets[0].getsockname()[:2]
    if started is not None:
        started(f"http://{bound_host}:{bound_port}")
    try:
        await server.main_loop()
    finally:
        await server.shutdown()
