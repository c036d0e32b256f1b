"""X5: /health answers while the process runs, /ready follows readiness, /metrics is Prometheus text."""

from __future__ import annotations

import asyncio

from shared.observability import METRICS, HealthServer


async def _get(port: int, path: str) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.0\r\n\r\n".encode())
    await writer.drain()
    response = await reader.read()
    writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


async def test_x5_health_ready_and_metrics() -> None:
    ready = False
    server = HealthServer(0, lambda: ready)
    await server.start()
    try:
        METRICS.messages.labels("handled").inc()
        assert await _get(server.port, "/health") == (200, b"ok\n")
        assert (await _get(server.port, "/ready"))[0] == 503
        ready = True
        assert (await _get(server.port, "/ready"))[0] == 200
        status, body = await _get(server.port, "/metrics")
        assert status == 200
        assert b'tradeguard_messages_total{outcome="handled"}' in body
        assert (await _get(server.port, "/nowhere"))[0] == 404
    finally:
        await server.stop()
